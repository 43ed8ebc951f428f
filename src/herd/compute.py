"""Training compute: FLOPs of a training run and GPU peaks, for the plan's GPU-hours and the
MFU each trained student reports in metrics.json."""

from __future__ import annotations

# About 6 FLOPs per parameter and token (2 forward, 4 backward; Kaplan et al. 2020). An
# encoder-decoder sends each token through one half of it (encoder or decoder), so about 3
# per parameter and token of input plus target.
FLOPS_PER_PARAM_TOKEN = 6
FLOPS_PER_PARAM_TOKEN_ENC_DEC = 3
# Dense bf16 peak TFLOP/s per GPU (vendor data sheets, SXM parts), for the MFU in metrics.json;
# matched against torch.cuda.get_device_name(), first match wins. Unknown GPUs get no MFU.
GPU_PEAK_TFLOPS = (("H200", 989.0), ("H100", 989.0), ("GH200", 989.0), ("A100", 312.0),
                   ("L40S", 362.0), ("L40", 181.0), ("A10G", 70.0), ("A10", 125.0), ("L4", 121.0), ("A6000", 155.0))


def training_flops(parameters: float, tokens: float, encoder_decoder: bool = False) -> float:
    """Training FLOPs of a model of `parameters` over `tokens` (forward and backward):
    6·N·T for a decoder, 3·N·T for an encoder-decoder (T counts input and target tokens)."""
    per = FLOPS_PER_PARAM_TOKEN_ENC_DEC if encoder_decoder else FLOPS_PER_PARAM_TOKEN
    return per * parameters * tokens


def gpu_hours(flops: float, peak_tflops: float, mfu: float) -> float:
    """GPU-hours to do `flops` at `mfu` (model FLOPs utilization) of a `peak_tflops` GPU."""
    return flops / (peak_tflops * 1e12 * mfu) / 3600



def gpu_peak_tflops(device_name: str) -> float | None:
    """Dense bf16 peak of a GPU by its name (GPU_PEAK_TFLOPS), or None when unknown."""
    for key, peak in GPU_PEAK_TFLOPS:
        if key in device_name:
            return peak
    return None
