"""Weight-only quantization of the AR model (``--quantization``) and its fused decode kernel."""

from cosmos_cli.quant.linear import QUANTIZATIONS, QuantLinear, check_quantization, quantize_model

__all__ = ["QUANTIZATIONS", "QuantLinear", "check_quantization", "quantize_model"]
