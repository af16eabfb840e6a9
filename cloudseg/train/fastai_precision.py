"""Mixed precision and channels-last for the fastai r18 pipeline.

fastai's own ``MixedPrecision`` (``learn.to_fp16()``, ``learn.to_bf16()``) runs autocast on CUDA
only: on a CPU it warns and trains in fp32. So on CUDA the pipeline uses fastai's callback
(fp16 with its gradient scaler, or bf16), and on a CPU :class:`CpuAutocast`, the same autocast
window (from before the forward pass to after the loss) for bf16, without a scaler (bf16 keeps
fp32's exponent range). :class:`ChannelsLastInput` puts each batch in the channels-last layout
the model was converted to (fastai's ``ChannelsLast`` converts the model only).
"""

from __future__ import annotations

import torch
from fastai.callback.core import Callback
from fastai.learner import Learner

from cloudseg.train.precision import DTYPES, Precision


class CpuAutocast(Callback):
    """bf16 autocast of the forward pass and the loss on the CPU; predictions back in fp32."""

    order = 10  # where fastai's MixedPrecision sits: after data callbacks, before metrics

    def __init__(self, dtype: torch.dtype = torch.bfloat16) -> None:
        self.dtype = dtype
        self._autocast: torch.autocast | None = None

    def before_batch(self) -> None:
        self._autocast = torch.autocast("cpu", dtype=self.dtype)
        self._autocast.__enter__()

    def after_pred(self) -> None:
        self.learn.pred = self.pred.float()  # the loss and the metrics in fp32

    def after_loss(self) -> None:
        self._close()

    def after_cancel_batch(self) -> None:
        self._close()

    def _close(self) -> None:
        if self._autocast is not None:
            self._autocast.__exit__(None, None, None)
            self._autocast = None


class ChannelsLastInput(Callback):
    """Each input batch in channels-last memory format (the model is converted once)."""

    order = 5

    def before_batch(self) -> None:
        self.learn.xb = tuple(x.contiguous(memory_format=torch.channels_last) for x in self.xb)


def apply_precision(learn: Learner, precision: Precision) -> Learner:
    """Channels-last model and inputs, and autocast as ``precision`` says; weights stay fp32."""
    learn.model = learn.model.to(memory_format=torch.channels_last)
    learn.add_cb(ChannelsLastInput())
    if precision.name == "f32":
        return learn
    if precision.device_type == "cuda":
        return learn.to_fp16() if precision.name == "f16" else learn.to_bf16()
    learn.add_cb(CpuAutocast(DTYPES[precision.name]))
    return learn
