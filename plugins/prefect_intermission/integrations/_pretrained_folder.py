"""The model in a Hugging Face `Trainer` checkpoint, as the folder `from_pretrained` loads.

A `Trainer` checkpoint folder holds what the model's `save_pretrained` writes (`config.json`
and `model.safetensors`; a PEFT model's `adapter_config.json` and `adapter_model.safetensors`;
the tokenizer's files when the `Trainer` has one) and the state of training, which a resume
reads and loading the model does not: the optimizer, scheduler, gradient scaler and RNG
states and `trainer_state.json`. `intermission best` writes the former. Nothing here
imports Transformers.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from prefect_intermission.integrations._checkpoint_folder import CHECKPOINT_KIND, packed_files

#: The files of a `Trainer` checkpoint that hold the state of training (Transformers'
#: `OPTIMIZER_NAME`, `SCHEDULER_NAME`, `SCALER_NAME`, `TRAINER_STATE_NAME`, and the RNG states).
TRAINING_STATE = re.compile(r"optimizer\.pt|scheduler\.pt|scaler\.pt|trainer_state\.json|rng_state(_\d+)?\.pth")
#: A whole model's configuration, written by `PreTrainedModel.save_pretrained`.
MODEL_CONFIG = "config.json"
#: A PEFT adapter's configuration, written by `PeftModel.save_pretrained`.
ADAPTER_CONFIG = "adapter_config.json"


@dataclass(frozen=True)
class PretrainedModel:
    """A model's `save_pretrained` folder, taken out of a `Trainer` checkpoint.

    Attributes:
        files: Each file's bytes, by its path in the folder.
    """

    files: dict[str, bytes]

    @property
    def is_adapter(self) -> bool:
        """Whether it is a PEFT adapter, loaded onto its base model, rather than a whole model."""
        return ADAPTER_CONFIG in self.files

    @property
    def what(self) -> str:
        """What the folder holds, in words."""
        if self.is_adapter:
            return f"the {self._config(ADAPTER_CONFIG).get('peft_type') or 'PEFT'} adapter weights"
        return "the model weights and config"

    def load_with(self, folder: str) -> str:
        """The Python that loads the model from `folder`."""
        if self.is_adapter:
            base = self._config(ADAPTER_CONFIG).get("base_model_name_or_path")
            built = f"loaded from {base!r}" if base else "built as the objective builds it"
            return (
                f"from peft import PeftModel; model = PeftModel.from_pretrained(base_model, {folder!r}) "
                f"(base_model: the model the objective passed to get_peft_model, {built})"
            )
        architectures = self._config(MODEL_CONFIG).get("architectures") or ["AutoModel"]
        model_class = architectures[0]
        return f"from transformers import {model_class}; model = {model_class}.from_pretrained({folder!r})"

    def _config(self, name: str) -> dict[str, Any]:
        config = json.loads(self.files[name])
        return config if isinstance(config, dict) else {}


def pretrained_model(state: dict[str, Any]) -> PretrainedModel | None:
    """The model in a checkpoint of the Transformers `IntermissionCallback`; None for another
    trainer's checkpoint, or when the model saved no config (a plain `nn.Module`, whose weights
    are a state dict).

    Raises:
        CheckpointError: The checkpoint names a file outside its folder.
    """
    if state.get("trainer") != CHECKPOINT_KIND:
        return None
    files = {name: data for name, data in packed_files(state).items() if not TRAINING_STATE.fullmatch(name)}
    if MODEL_CONFIG not in files and ADAPTER_CONFIG not in files:
        return None
    return PretrainedModel(files)
