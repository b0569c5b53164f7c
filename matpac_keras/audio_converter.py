"""`MatpacAudioConverter`: MATPAC's preprocessing as a keras-hub `AudioConverter`.

16 kHz waveforms of any length -> the normalised log-mel the backbone takes (SPEC section 1,
computed by `frontend.LogMelSpectrogram`). Saved with a preset (`audio_converter.json`) and
loaded with `keras_hub.layers.AudioConverter.from_preset(dir)`. It runs eagerly on the current
backend, inside a model, and inside `tf.data` (where it computes with TensorFlow whatever the
backend).
"""

import keras
import keras_hub

from matpac_keras.audio import SAMPLE_RATE
from matpac_keras.backbone import MatpacBackbone
from matpac_keras.frontend import N_MELS, LogMelSpectrogram


@keras.saving.register_keras_serializable(package="matpac_keras")
class MatpacAudioConverter(keras_hub.layers.AudioConverter):
    """Waveform `[batch, samples]` at 16 kHz -> normalised log-mel `[batch, 80, frames]`.

    `frames = 1 + (samples - 400) // 160` (no centring); clips need at least 400 samples.

    Args:
        sampling_rate: int. The rate of the input; only 16000 is accepted (resample first, e.g.
            with `matpac_keras.audio.load_audio`). Defaults to 16000.
        normalize: bool. Apply the AudioSet statistics, as the model expects. Defaults to True.

    Example:
    >>> converter = MatpacAudioConverter()
    >>> converter(np.zeros((2, 16000), "float32")).shape  # (2, 80, 98)
    """

    backbone_cls = MatpacBackbone

    def __init__(self, sampling_rate: int = SAMPLE_RATE, normalize: bool = True, **kwargs):
        super().__init__(**kwargs)
        if sampling_rate != SAMPLE_RATE:
            raise ValueError(
                f"sampling_rate={sampling_rate}: MATPAC takes {SAMPLE_RATE} Hz audio; resample "
                "it first (matpac_keras.audio.load_audio does)"
            )
        self.sampling_rate = sampling_rate
        self.normalize = normalize
        self.logmel = LogMelSpectrogram(normalize=normalize, name="logmel")

    def call(self, waveform):
        return self.logmel(waveform)

    def audio_shape(self):
        return (N_MELS, None)

    def compute_output_shape(self, input_shape):
        return self.logmel.compute_output_shape(input_shape)

    def get_config(self):
        return {
            **super().get_config(),
            "sampling_rate": self.sampling_rate,
            "normalize": self.normalize,
        }
