"""BSSEval v4: the metrics of museval 0.4.1, much faster, with numpy or torch on GPUs.

BSSEval v4 (Liutkus, Stöter and Ito, "The 2018 Signal Separation Evaluation Campaign",
LVA/ICA 2018) decomposes each estimate into the filtered true source image, spatial
distortion, interference and artifacts, with distortion filters of `filters_len` taps solved
once over the whole track, and reports four energy ratios per window:

    SDR = 10 log10(|s|^2 / |e - s|^2)                   source to distortion
    ISR = 10 log10(|s|^2 / |P_j - s|^2)                 image to spatial distortion
    SIR = 10 log10(|P_j|^2 / |P_all - P_j|^2)           source to interference
    SAR = 10 log10(|P_all|^2 / |e - P_all|^2)           source to artifacts

where, in each window, s is the reference image, e the estimate, P_j the projection of e on
delayed copies of its own reference and P_all its projection on delayed copies of all
references (filters solved over the whole track, applied to the window's samples; every
signal is followed by filters_len - 1 zeros, the filters' tail).

What museval does, and what is done here instead to get the same numbers faster, a module
each (benchmarks/eval_core.py and eval_solvers.py measure them; figures in
benchmarks/README.md):

- ``correlations``: museval computes every reference/reference and reference/estimate
  correlation with full-length FFTs. Here the lags 0..filters_len-1 are accumulated over
  short blocks: the blocks' cross-spectra are summed by a batched matrix product, then one
  short inverse FFT gives every lag.
- ``filters``, ``dense``, ``levinson``: museval solves its (sources * channels *
  filters_len)^2 Gram matrix by LU once per estimate. Here each source's own system (a
  diagonal block) is factorised once for all estimates, and the block-Toeplitz system of all
  sources is solved by the block Levinson recursion in O(filters_len^2) small steps, refined
  twice by solving again for its residual with the predictors the recursion kept. It is
  kept where its residual is small and the systems well conditioned (references stored
  with 16 bits, as MUSDB18's, are); elsewhere one dense Cholesky factorisation (LU and
  least squares as museval's where it fails) serves all estimates.
- ``energies``: museval projects each window with one FFT convolution per source, channel
  pair and filter set. Here each window is transformed once, projections are products of
  spectra and their energies follow from Parseval's theorem, with no inverse transform.
- ``scores``: the ratios, framing and silence rules (``bss_eval_v4``).

On the CPU everything is computed with numpy and scipy's LAPACK, whose FFTs and small
matrix products are faster there than torch's, and torch is not even imported; on a GPU
(``device``) the arrays are torch tensors. The code is one, written in what numpy arrays
and tensors share (``sepkit.metrics.arrays`` where they differ).

Agreement with museval is limited by the conditioning of the filter systems, not by this
implementation: on references like MUSDB18's (16-bit, band-limited at 16 kHz) the scores
agree to ~1e-6 dB. References with little noise below the signal (float stems of synthetic
or band-limited audio) make the systems ill-conditioned: ISR, SIR and SAR then depend on
float rounding, museval's own too (they move when the sources are merely listed in another
order: by ~0.002 dB at a condition number of 1e14, by tens of dB when numerically singular).
bss_eval_v4 warns where they may exceed 1e-3 dB.
"""

from sepkit.metrics.bsseval.scores import bss_eval_v4, number_of_windows, silent_sources

__all__ = ["bss_eval_v4", "number_of_windows", "silent_sources"]
