"""Image to video with Wan2.2-I2V-A14B: two experts switched at the boundary timestep.

Reads top to bottom like a diffusers pipeline (encode text, encode image, denoise, decode), but runs
its own loop over diffusers' components so that it can time every stage, report progress after
every step and stop at the next step when asked. Loading lives in ``wan_loading``.
"""

from __future__ import annotations

import contextlib
import copy
import threading
from collections.abc import Callable, Sequence

import numpy as np
import torch

from pipelines.common.callbacks import CancelCheck, ProgressCallback
from pipelines.common.errors import InvalidInputError
from pipelines.common.stage_clock import StageClock
from pipelines.video.chained import SegmentInput, SegmentResult, VideoResult, render_chain
from pipelines.video.decode_checks import cancellable_decode
from pipelines.video.request import VideoRequest

__all__ = ["SegmentInput", "SegmentResult", "VideoResult", "WanImageToVideo"]


class WanImageToVideo:
    """One loaded Wan I2V pipeline. Calls are serialised: a replica renders one video at a time."""

    streams_segments = True  # takes ``sink`` and ``segment_started`` (see __call__)

    def __init__(self, pipe, *, max_sequence_length: int = 512, motion_loras=None) -> None:
        self.pipe = pipe
        self.motion_loras = motion_loras  # pipelines.video.lora_adapters.MotionLoras, or None: no LoRA library
        self.max_sequence_length = max_sequence_length
        self.boundary_ratio = pipe.config.boundary_ratio
        if self.boundary_ratio is not None and pipe.transformer_2 is None:
            raise ValueError("a pipeline with boundary_ratio needs both experts (transformer and transformer_2)")
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, config) -> WanImageToVideo:
        from pipelines.video.loading import load_wan_pipeline

        pipe = load_wan_pipeline(config)
        motion_loras = None
        if config.loras is not None:
            from pipelines.video.lora_adapters import MotionLoras

            motion_loras = MotionLoras(pipe, config.loras)
        return cls(pipe, max_sequence_length=config.max_sequence_length, motion_loras=motion_loras)

    @property
    def device(self) -> torch.device:
        return self.pipe._execution_device

    def __call__(
        self,
        request: VideoRequest,
        progress: ProgressCallback | None = None,
        should_cancel: CancelCheck | None = None,
        loras: Sequence[tuple[str, float]] = (),
        *,
        sink=None,
        segment_started: Callable[[int, int], None] | None = None,
    ) -> VideoResult:
        """``loras``: (library id, strength) pairs active for this call only (motion LoRAs).

        ``progress`` gets (steps done, steps in all) over the whole video, every segment included;
        ``segment_started`` gets (segment index, segments in all) as each segment begins. ``sink`` (a
        ``pipelines.video.segment_pieces.SegmentSink``) receives each finished segment; segments it already
        holds are not rendered again. Without one the frames are kept in memory and returned."""
        with self._lock, torch.inference_mode(), self._motion_lora_scope(loras) as switch:
            result = self._run(request, progress, should_cancel, sink, segment_started)
        if switch is not None:
            result.timings_s["lora_switch"] = switch.seconds
        return result

    # Motion LoRAs (issue #13): hooked in for one call, under the render lock, and always removed after it, so
    # no render ever runs with another job's adapter. The denoise loop itself knows nothing of them.
    def _motion_lora_scope(self, loras: Sequence[tuple[str, float]]):
        if not loras:
            return contextlib.nullcontext()
        if self.motion_loras is None:
            raise InvalidInputError("this service has no LoRA library (video_generator.model.loras)", field="lora")
        return self.motion_loras.applied(loras)

    def _run(self, request: VideoRequest, progress, should_cancel, sink=None, segment_started=None) -> VideoResult:
        return render_chain(self, request, progress, should_cancel, sink=sink, segment_started=segment_started)

    def encode_text(self, prompt: str, negative_prompt: str, uses_guidance: bool):
        """Prompt embeddings (and the negative ones when guidance is on) in the experts' dtype."""
        pipe = self.pipe
        prompt_embeds, negative_embeds = pipe.encode_prompt(
            prompt=prompt,
            negative_prompt=negative_prompt,
            do_classifier_free_guidance=uses_guidance,
            num_videos_per_prompt=1,
            max_sequence_length=self.max_sequence_length,
            device=self.device,
        )
        expert_dtype = pipe.transformer.dtype
        prompt_embeds = prompt_embeds.to(expert_dtype)
        if negative_embeds is not None:
            negative_embeds = negative_embeds.to(expert_dtype)
        return prompt_embeds, negative_embeds

    def render_segment(
        self,
        segment: SegmentInput,
        progress: ProgressCallback | None = None,
        check: Callable[[str], None] = lambda where: None,
    ) -> SegmentResult:
        """One render of at most 81 frames that starts on ``segment.first`` and, with ``segment.last``, ends
        on it. First/last-frame conditioning follows diffusers' ``WanImageToVideoPipeline`` (0.42): the
        condition video is [first, zeros, last] encoded by the VAE together, and the mask marks the first
        and the last frame as known (without ``last``: the first only)."""
        pipe, device = self.pipe, self.device
        clock = StageClock(device)
        timings: dict[str, float] = {}
        # A CPU generator gives the same noise for the same seed on every device.
        generator = torch.Generator("cpu").manual_seed(segment.seed)
        first = pipe.video_processor.preprocess(segment.first, height=segment.height, width=segment.width)
        last = None
        if segment.last is not None:
            last = pipe.video_processor.preprocess(segment.last, height=segment.height, width=segment.width)
            last = last.to(device, dtype=torch.float32)
        latents, condition = pipe.prepare_latents(
            first.to(device, dtype=torch.float32),
            1,
            pipe.vae.config.z_dim,
            segment.height,
            segment.width,
            segment.frames,
            torch.float32,
            device,
            generator,
            last_image=last,
        )
        timings["image_encode"] = clock.lap()

        expert_dtype = pipe.transformer.dtype
        scheduler = copy.deepcopy(pipe.scheduler)
        scheduler.set_timesteps(segment.steps, device=device)
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
            scale = segment.guidance_scale if high_noise else segment.guidance_scale_2
            model_input = torch.cat([latents, condition], dim=1).to(expert_dtype)
            timestep = t.expand(latents.shape[0])
            noise = model(
                hidden_states=model_input,
                timestep=timestep,
                encoder_hidden_states=segment.prompt_embeds,
                return_dict=False,
            )[0]
            if scale > 1.0:
                unconditional = model(
                    hidden_states=model_input,
                    timestep=timestep,
                    encoder_hidden_states=segment.negative_embeds,
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

        with cancellable_decode(pipe.vae, check):  # the decode is the longest stage: checked per latent frame
            frames = self._decode(latents)
        timings["vae_decode"] = clock.lap()
        return SegmentResult(frames=frames, timings_s=timings, experts_per_step=experts, step_timings_s=step_timings)

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
