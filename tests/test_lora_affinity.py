"""Claim affinity for motion LoRAs: prefer a job needing no adapter load, never starve the head of the queue."""

from deployments.jobs.lora_affinity import ClaimCandidate, pick_with_affinity

NOW = 1000.0


def jobs(*specs):
    return [ClaimCandidate(f"job{i}", lora, NOW - age) for i, (lora, age) in enumerate(specs)]


def test_a_held_lora_is_preferred_over_an_older_job_needing_a_load():
    queue = jobs(("orbit", 1.0), ("dolly", 0.5))
    assert pick_with_affinity(queue, frozenset({"dolly"}), NOW).job_id == "job1"


def test_a_job_without_a_lora_needs_no_load_either():
    queue = jobs(("orbit", 1.0), (None, 0.5), ("dolly", 0.2))
    assert pick_with_affinity(queue, frozenset({"dolly"}), NOW).job_id == "job1"


def test_the_head_is_taken_when_nothing_matches_or_once_it_waited_long_enough():
    assert pick_with_affinity(jobs(("orbit", 1.0), ("dolly", 0.5)), frozenset(), NOW).job_id == "job0"
    waited = jobs(("orbit", 5.0), ("dolly", 0.5))
    assert pick_with_affinity(waited, frozenset({"dolly"}), NOW, max_wait_s=5.0).job_id == "job0"


def test_an_empty_queue_gives_nothing():
    assert pick_with_affinity([], frozenset({"orbit"}), NOW) is None
