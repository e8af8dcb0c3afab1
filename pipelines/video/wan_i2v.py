"""Image to video with Wan2.2-I2V-A14B: two experts switched at the boundary timestep.

Reads top to bottom like a diffusers pipeline (encode text, encode image, denoise, decode), but runs
its own loop over diffusers' components so that it can time every stage, report progress after
every step and stop at the next step when asked. Loading lives in ``wan_loading``.
"""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass, field

import numpy as np
import torch

from pipelines.common.callbacks import CancelCheck, ProgressCallback
from pipelines.common.errors import JobCancelledError
from pipelines.common.stage_clock import StageClock
from pipelines.video.plan import plan_video, prepare_image
from pipelines.video.request import VideoRequest


@dataclass
class VideoResult:
    frames: np.ndarray  # uint8, (frames, height, width, 3)
    fps: int
    seed: int
    timings_s: dict[str, float] = field(default_factory=dict)
    experts_per_step: list[str] = field(default_factory=list)
    step_timings_s: list[float] = field(default_factory=list)  # each denoising step, in order

    @property
    def width(self) -> int:
        return int(self.frames.shape[2])

    @property
    def height(self) -> int:
        return int(self.frames.shape[1])


class WanImageToVideo:
    """One loaded Wan I2V pipeline. Calls are serialised: a replica renders one video at a time."""

    def __init__(self, pipe, *, max_sequence_length: int = 512) -> None:
        self.pipe = pipe
        self.max_sequence_length = max_sequence_length
        self.boundary_ratio = pipe.config.boundary_ratio
        if self.boundary_ratio is not None and pipe.transformer_2 is None:
            raise ValueError("a pipeline with boundary_ratio needs both experts (transformer and transformer_2)")
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, config) -> WanImageToVideo:
        from pipelines.video.loading import load_wan_pipeline

        return cls(load_wan_pipeline(config), max_sequence_length=config.max_sequence_length)

    @property
    def device(self) -> torch.device:
        return self.pipe._execution_device

    def __call__(
        self,
        request: VideoRequest,
        progress: ProgressCallback | None = None,
        should_cancel: CancelCheck | None = None,
    ) -> VideoResult:
        with self._lock, torch.inference_mode():
            return self._run(request, progress, should_cancel)

    def _run(self, request: VideoRequest, progress, should_cancel) -> VideoResult:
        pipe, device = self.pipe, self.device
        plan = plan_video(request.image.width, request.image.height, request.duration_s)
        image = prepare_image(request.image, plan)
        timings: dict[str, float] = {}
        uses_guidance = max(request.guidance_scale, request.guidance_scale_2) > 1.0

        def check(where: str) -> None:
            # Between stages as well as between steps: image encoding and decoding are seconds long on a GPU
            # and minutes on a CPU, so a cancel must not wait for them to finish.
            if should_cancel is not None and should_cancel():
                raise JobCancelledError(f"cancelled {where}")

        check("before text encoding")
        clock = StageClock(device)
        prompt_embeds, negative_embeds = pipe.encode_prompt(
            prompt=request.prompt,
            negative_prompt=request.negative_prompt,
            do_classifier_free_guidance=uses_guidance,
            num_videos_per_prompt=1,
            max_sequence_length=self.max_sequence_length,
            device=device,
        )
        expert_dtype = pipe.transformer.dtype
        prompt_embeds = prompt_embeds.to(expert_dtype)
        if negative_embeds is not None:
            negative_embeds = negative_embeds.to(expert_dtype)
        timings["text_encode"] = clock.lap()
        check("after text encoding, before image encoding")

        # A CPU generator gives the same noise for the same seed on every device.
        generator = torch.Generator("cpu").manual_seed(request.seed)
        image_tensor = pipe.video_processor.preprocess(image, height=plan.height, width=plan.width)
        latents, condition = pipe.prepare_latents(
            image_tensor.to(device, dtype=torch.float32),
            1,
            pipe.vae.config.z_dim,
            plan.height,
            plan.width,
            plan.frames,
            torch.float32,
            device,
            generator,
        )
        timings["image_encode"] = clock.lap()

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
            scale = request.guidance_scale if high_noise else request.guidance_scale_2
            model_input = torch.cat([latents, condition], dim=1).to(expert_dtype)
            timestep = t.expand(latents.shape[0])
            noise = model(
                hidden_states=model_input, timestep=timestep, encoder_hidden_states=prompt_embeds, return_dict=False
            )[0]
            if scale > 1.0:
                unconditional = model(
                    hidden_states=model_input,
                    timestep=timestep,
                    encoder_hidden_states=negative_embeds,
                    return_dict=False,
                )[0]
                noise = unconditional + scale * (noise - unconditional)
            latents = scheduler.step(noise, t, latents, return_dict=False)[0]
            stage = "high_noise" if high_noise else "low_noise"
            experts.append(stage)
            step_timings.append(clock.lap())
            timings[f"denoise_{stage}"] += step_timings[-1]
            if progress is not None:
                progress(index + 1, total)
        check(f"after step {total} of {total}, before decoding")

        frames = self._decode(latents)
        timings["vae_decode"] = clock.lap()
        check("after decoding")
        return VideoResult(
            frames=frames,
            fps=plan.fps,
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
