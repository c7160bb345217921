"""Where a training step's GPU time goes: a summary of a torch.profiler Chrome trace.

Axolotl writes ``output_dir/profiler_trace.json`` when a recipe sets
``profiler_steps`` (and ``profiler_steps_start``). This reads the CUDA kernels in
it and answers the two questions that decide what to optimise:

- how much of the step the GPU spends running kernels at all (if it is idle most
  of the time, the step is bound by Python and kernel launches, and bigger
  batches, fewer ops or CUDA graphs are what help, not faster matmuls);
- which kinds of kernels take that time (matmuls, 4-bit dequantisation,
  attention, softmax/cross-entropy, elementwise, copies).

The profiler adds CPU overhead of its own, so the busy share is also reported
against an unprofiled step time when one is given (``--step-seconds``).

    python -m benchmarks.profile_trace outputs/x/profiler_trace.json --step-seconds 2.6
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

# First match wins: order from specific to generic.
CATEGORIES = [
    ("4-bit dequantize", r"dequant|kDequantize|kgemm_4bit"),
    # Inductor's generated kernels (torch.compile): pointwise, reduction and persistent-reduction
    # fusions; one family, since one fused kernel holds casts, elementwise work and norms at once.
    ("compiled (Inductor fused)", r"^triton_(poi|red|per)_"),
    ("attention", r"flash|fmha|attention|sdpa|_efficient_|cutlassF"),
    ("matmul", r"gemm|cutlass|nvjet|sm90_xmma|sm80_xmma|cublas|splitK"),
    ("softmax / cross-entropy", r"softmax|cross_entropy|nll_loss|log_softmax|logsumexp"),
    ("reduction", r"reduce|Reduce|norm_kernel|welford"),
    ("copy / cast", r"copy|Copy|memcpy|Memcpy|memset|cat_|CatArray|to_copy|fill"),
    ("elementwise", r"elementwise|vectorized|unrolled|pointwise"),
    ("indexing / embedding", r"index|gather|scatter|embedding|Embedding"),
]


def categorize(name: str) -> str:
    """The kernel family a CUDA kernel name belongs to."""
    for label, pattern in CATEGORIES:
        if re.search(pattern, name, re.IGNORECASE):
            return label
    return "other"


def busy_time(intervals: list[tuple[float, float]]) -> float:
    """Length of the union of [start, end) intervals: time with at least one kernel running."""
    total, end = 0.0, float("-inf")
    for start, stop in sorted(intervals):
        if start >= end:
            total += stop - start
            end = stop
        elif stop > end:
            total += stop - end
            end = stop
    return total


def summarize(trace_path: Path, step_seconds: float | None = None, steps: int = 1, top: int = 15) -> dict:
    """Kernel time by category, GPU-busy share and the top kernels of a Chrome trace."""
    events = json.loads(Path(trace_path).read_text())
    events = events.get("traceEvents", events) if isinstance(events, dict) else events
    kernels = [e for e in events if e.get("cat") == "kernel" and "dur" in e]
    host = [e for e in events if e.get("ph") == "X" and e.get("cat") in ("cpu_op", "user_annotation") and "dur" in e]
    if not kernels:
        raise SystemExit(f"error: no CUDA kernels in {trace_path}; was it recorded on a GPU?")
    span_us = max(e["ts"] + e["dur"] for e in host + kernels) - min(e["ts"] for e in host + kernels)
    kernel_us = sum(e["dur"] for e in kernels)
    busy_us = busy_time([(e["ts"], e["ts"] + e["dur"]) for e in kernels])
    by_category: dict[str, float] = {}
    by_name: dict[str, list[float]] = {}
    for e in kernels:
        by_category[categorize(e["name"])] = by_category.get(categorize(e["name"]), 0.0) + e["dur"]
        entry = by_name.setdefault(e["name"], [0.0, 0])
        entry[0] += e["dur"]
        entry[1] += 1
    result = {
        "steps": steps,
        "profiled_span_s": span_us / 1e6,
        "kernels": len(kernels),
        "kernel_s": kernel_us / 1e6,
        "gpu_busy_s": busy_us / 1e6,
        "busy_share_of_profiled_span": busy_us / span_us,
        "mean_kernel_us": kernel_us / len(kernels),
        "categories": {k: v / 1e6 for k, v in sorted(by_category.items(), key=lambda kv: -kv[1])},
        "top_kernels": [
            {"name": n[:120], "s": v[0] / 1e6, "count": v[1], "category": categorize(n)}
            for n, v in sorted(by_name.items(), key=lambda kv: -kv[1][0])[:top]
        ],
    }
    if step_seconds:
        result["unprofiled_step_s"] = step_seconds
        result["busy_share_of_unprofiled_step"] = busy_us / 1e6 / (step_seconds * steps)
    return result


def format_summary(s: dict) -> str:
    """The summary as a plain table."""
    lines = [
        f"profiled {s['steps']} step(s): span {s['profiled_span_s']:.2f} s, {s['kernels']} kernels "
        f"(mean {s['mean_kernel_us']:.1f} µs), GPU busy {s['gpu_busy_s']:.2f} s "
        f"({100 * s['busy_share_of_profiled_span']:.0f}% of the profiled span)"
    ]
    if "unprofiled_step_s" in s:
        lines.append(
            f"unprofiled step {s['unprofiled_step_s']:.2f} s: GPU busy "
            f"{100 * s['busy_share_of_unprofiled_step']:.0f}% of it"
        )
    lines.append(f"{'kernel family':<26} {'seconds':>8} {'share':>6}")
    for name, seconds in s["categories"].items():
        lines.append(f"{name:<26} {seconds:>8.3f} {100 * seconds / s['kernel_s']:>5.1f}%")
    lines.append(f"{'top kernels':<90} {'s':>7} {'count':>6}")
    for k in s["top_kernels"]:
        lines.append(f"{k['name'][:90]:<90} {k['s']:>7.3f} {k['count']:>6}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("trace", type=Path)
    parser.add_argument("--steps", type=int, default=1, help="optimizer steps the trace covers")
    parser.add_argument("--step-seconds", type=float, help="the same step's time without the profiler")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    summary = summarize(args.trace, args.step_seconds, args.steps)
    print(format_summary(summary))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
