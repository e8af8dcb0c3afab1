"""Video editing with Wan VACE: restyle under a structure video, or regenerate a masked subject.

Runs its own loop over diffusers' ``WanVACEPipeline`` components (its condition and latent preparation,
the two experts switched at ``boundary_ratio``), like ``pipelines.video.wan_i2v``, so that every stage
is timed, progress is reported after every step and a cancel stops at the next one.

- ``mode=style``: the VACE ``video`` is the control video (edges or greyscale of the source) and the
  mask is all white, so every pixel is regenerated while outlines and motion follow the source.
- ``mode=replace``: the ``video`` is the source with the masked region greyed out (the old subject is not
  shown to the model), the mask is the dilated subject mask, and an optional reference image gives the
  new subject's look. After decoding, everything outside the mask is put back from the source
  (feathered just inside the mask's edge), so the rest of the frame is the upload's own pixels rather
  than their VAE reconstruction.

``strength`` is VACE's ``conditioning_scale``: how strongly the control (or the kept context) steers.
"""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from pipelines.common.callbacks import CancelCheck, ProgressCallback
from pipelines.common.errors import JobCancelledError
from pipelines.common.stage_clock import StageClock
from pipelines.edit.control import control_video
from pipelines.edit.masks import blend_weights
from pipelines.edit.request import EditRequest
from pipelines.video.plan import FPS

GREY = 128  # what the masked region of a replace edit shows the model (0 in the VAE's [-1, 1] range)


@dataclass
class EditResult:
    frames: np.ndarray  # uint8 (frames, height, width, 3)
    fps: int
    seed: int
    timings_s: dict[str, float] = field(default_factory=dict)
    experts_per_step: list[str] = field(default_factory=list)
    step_timings_s: list[float] = field(default_factory=list)


class WanVaceEditor:
    """One loaded Wan VACE pipeline. Calls are serialised: a replica edits one video at a time."""

    def __init__(self, pipe, *, max_sequence_length: int = 512) -> None:
        self.pipe = pipe
        self.max_sequence_length = max_sequence_length
        self.boundary_ratio = pipe.config.boundary_ratio
        if self.boundary_ratio is not None and (pipe.transformer is None or pipe.transformer_2 is None):
            raise ValueError("a pipeline with boundary_ratio needs both experts (transformer and transformer_2)")
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, config) -> WanVaceEditor:
        from pipelines.edit.loading import load_vace_pipeline

        return cls(load_vace_pipeline(config), max_sequence_length=config.max_sequence_length)

    @property
    def device(self) -> torch.device:
        return self.pipe._execution_device

    def __call__(
        self,
        request: EditRequest,
        progress: ProgressCallback | None = None,
        should_cancel: CancelCheck | None = None,
    ) -> EditResult:
        with self._lock, torch.inference_mode():
            return self._run(request, progress, should_cancel)

    def _run(self, request: EditRequest, progress, should_cancel) -> EditResult:
        pipe, device = self.pipe, self.device
        frames = request.frames
        count, height, width = frames.shape[:3]
        timings: dict[str, float] = {}
        uses_guidance = max(request.guidance_scale, request.guidance_scale_2) > 1.0

        def check(where: str) -> None:
            if should_cancel is not None and should_cancel():
                raise JobCancelledError(f"cancelled {where}")

        check("before preparing the conditions")
        clock = StageClock(device)
        if request.mode == "style":
            condition, masks = control_video(frames, request.control), None
        else:
            masks = request.masks
            condition = np.where(masks[..., None], np.uint8(GREY), frames)
        timings["control" if request.mode == "style" else "condition"] = clock.lap()

        prompt_embeds, negative_embeds = pipe.encode_prompt(
            prompt=request.prompt,
            negative_prompt=request.negative_prompt,
            do_classifier_free_guidance=uses_guidance,
            num_videos_per_prompt=1,
            max_sequence_length=self.max_sequence_length,
            device=device,
        )
        expert = pipe.transformer if pipe.transformer is not None else pipe.transformer_2
        expert_dtype = expert.dtype
        prompt_embeds = prompt_embeds.to(expert_dtype)
        if negative_embeds is not None:
            negative_embeds = negative_embeds.to(expert_dtype)
        timings["text_encode"] = clock.lap()
        check("after text encoding, before video encoding")

        generator = torch.Generator("cpu").manual_seed(request.seed)  # same noise for a seed on every device
        video_in = [Image.fromarray(frame) for frame in condition]
        mask_in = None
        if masks is not None:
            mask_in = [Image.fromarray(mask.astype(np.uint8) * 255).convert("RGB") for mask in masks]
        references = None if request.reference_image is None else [request.reference_image.convert("RGB")]
        video, mask, references = pipe.preprocess_conditions(
            video_in, mask_in, references, 1, height, width, count, torch.float32, device
        )
        reference_count = len(references[0])
        conditioning = pipe.prepare_video_latents(video, mask, references, generator, device)
        conditioning = torch.cat([conditioning, pipe.prepare_masks(mask, references, generator)], dim=1)
        conditioning = conditioning.to(expert_dtype)
        latents = pipe.prepare_latents(
            1,
            expert.config.in_channels,
            height,
            width,
            count + reference_count * pipe.vae_scale_factor_temporal,
            torch.float32,
            device,
            generator,
        )
        scale = torch.full(
            (len(expert.config.vace_layers),), float(request.strength), device=device, dtype=expert_dtype
        )
        timings["vae_encode"] = clock.lap()

        scheduler = copy.deepcopy(pipe.scheduler)
        scheduler.set_timesteps(request.steps, device=device)
        timesteps = scheduler.timesteps
        boundary = None if self.boundary_ratio is None else self.boundary_ratio * scheduler.config.num_train_timesteps
        total = len(timesteps)
        experts: list[str] = []
        step_timings: list[float] = []
        timings["denoise_high_noise"] = timings["denoise_low_noise"] = 0.0
        for index, t in enumerate(timesteps):
            check(f"before step {index + 1} of {total}")
            high_noise = boundary is None or t >= boundary
            model = pipe.transformer if high_noise else pipe.transformer_2
            guidance = request.guidance_scale if high_noise else request.guidance_scale_2
            model_input = latents.to(expert_dtype)
            timestep = t.expand(latents.shape[0])
            kwargs = {"control_hidden_states": conditioning, "control_hidden_states_scale": scale, "return_dict": False}
            kwargs |= {"hidden_states": model_input, "timestep": timestep}
            noise = model(encoder_hidden_states=prompt_embeds, **kwargs)[0]
            if guidance > 1.0:
                unconditional = model(encoder_hidden_states=negative_embeds, **kwargs)[0]
                noise = unconditional + guidance * (noise - unconditional)
            latents = scheduler.step(noise, t, latents, return_dict=False)[0]
            stage = "high_noise" if high_noise else "low_noise"
            experts.append(stage)
            step_timings.append(clock.lap())
            timings[f"denoise_{stage}"] += step_timings[-1]
            if progress is not None:
                progress(index + 1, total)
        check(f"after step {total} of {total}, before decoding")

        edited = self._decode(latents[:, :, reference_count:])
        timings["vae_decode"] = clock.lap()
        if masks is not None:
            weights = blend_weights(masks, request.feather_px)[..., None]
            edited = (frames * (1.0 - weights) + edited * weights).round().astype(np.uint8)
            timings["composite"] = clock.lap()
        check("after decoding")
        return EditResult(
            frames=edited,
            fps=FPS,
            seed=request.seed,
            timings_s=timings,
            experts_per_step=experts,
            step_timings_s=step_timings,
        )

    def _decode(self, latents: torch.Tensor) -> np.ndarray:
        vae = self.pipe.vae
        z_dim = vae.config.z_dim
        latents = latents.to(device=vae.device, dtype=vae.dtype)
        mean = torch.tensor(vae.config.latents_mean, device=latents.device, dtype=latents.dtype)
        std = torch.tensor(vae.config.latents_std, device=latents.device, dtype=latents.dtype)
        latents = latents * std.view(1, z_dim, 1, 1, 1) + mean.view(1, z_dim, 1, 1, 1)
        video = vae.decode(latents, return_dict=False)[0]  # (1, 3, F, H, W) in [-1, 1]
        video = ((video[0].float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        return video.permute(1, 2, 3, 0).cpu().numpy()


def vae_round_trip(pipe, frames: np.ndarray) -> np.ndarray:
    """The frames through the VAE and back, with nothing generated: the floor any latent edit starts from."""
    with torch.inference_mode():
        video = pipe.video_processor.preprocess_video([Image.fromarray(f) for f in frames], *frames.shape[1:3])
        vae = pipe.vae
        latent = vae.encode(video.to(vae.device, vae.dtype)).latent_dist.mode()
        decoded = vae.decode(latent, return_dict=False)[0]
        decoded = ((decoded[0].float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        return decoded.permute(1, 2, 3, 0).cpu().numpy()
