# Sourced by the recipe scripts: the tiny data and training settings of their --smoke mode
# (one training step on a few seconds of generated audio), shared so they stay alike.
SMOKE_TRAINER=(trainer.epochs=1 trainer.steps_per_epoch=1 trainer.batch_size=2
               trainer.progress=false trainer.patience=null)
SMOKE_MUSIC=("${SMOKE_TRAINER[@]}" dataset.nb_train_tracks=2 dataset.nb_test_tracks=1
             dataset.train_duration=2.0 dataset.test_duration=1.0 dataset.segment=0.5
             dataset.samples_per_track=2 dataset.valid_fraction=0.5)
SMOKE_SPEECH=("${SMOKE_TRAINER[@]}" dataset.nb_train=4 dataset.nb_valid=2 dataset.nb_test=2
              dataset.min_duration=1.0 dataset.max_duration=1.5 dataset.segment=1.0)
