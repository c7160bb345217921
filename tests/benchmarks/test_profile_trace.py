"""The profiler-trace summary: kernel families, GPU-busy time, and the train benchmark's use of it."""

import json

import pytest

from benchmarks.profile_trace import busy_time, categorize, format_summary, summarize


def kernel(name: str, ts: float, dur: float) -> dict:
    return {"ph": "X", "cat": "kernel", "name": name, "ts": ts, "dur": dur}


@pytest.fixture
def trace(tmp_path):
    events = [
        {"ph": "X", "cat": "cpu_op", "name": "aten::mm", "ts": 0, "dur": 1000},
        kernel("sm90_xmma_gemm_bf16bf16_bf16f32", 100, 300),
        kernel("void kDequantizeBlockwise<__nv_bfloat16, 512, 64, 8, 2>", 50, 100),  # overlaps the gemm
        kernel("void at::native::vectorized_elementwise_kernel<4, at::native::AUnaryFunctor>", 600, 50),
        kernel("pytorch_flash::flash_fwd_kernel<Flash_fwd_kernel_traits>", 700, 100),
        kernel("void at::native::(anonymous namespace)::cunn_SoftMaxForward<4, float>", 900, 20),
    ]
    path = tmp_path / "profiler_trace.json"
    path.write_text(json.dumps({"traceEvents": events}))
    return path


@pytest.mark.parametrize(
    "name, family",
    [
        ("void kDequantizeBlockwise<__nv_bfloat16, 512>", "4-bit dequantize"),
        ("nvjet_tst_128x256_64x4_1x2_h_bz_coopA_NTT", "matmul"),
        ("pytorch_flash::flash_bwd_dq_dk_dv_loop_kernel", "attention"),
        ("void at::native::(anonymous namespace)::cunn_SoftMaxBackward<4, float>", "softmax / cross-entropy"),
        ("void at::native::reduce_kernel<512, 1>", "reduction"),
        ("void at::native::elementwise_kernel<128, 2>", "elementwise"),
        ("Memcpy DtoH (Device -> Pinned)", "copy / cast"),
        ("void at::native::indexSelectLargeIndex<float>", "indexing / embedding"),
        ("triton_poi_fused__to_copy_add_mul_0", "compiled (Inductor fused)"),
        ("triton_red_fused_add_mean_mul_pow_rsqrt_1", "compiled (Inductor fused)"),
        ("triton_per_fused__to_copy_mean_2", "compiled (Inductor fused)"),
        ("some_custom_kernel", "other"),
    ],
)
def test_categorize(name, family):
    assert categorize(name) == family


def test_busy_time_counts_overlaps_once():
    assert busy_time([(0, 10), (5, 15), (20, 30), (21, 22)]) == 25
    assert busy_time([]) == 0


def test_summarize(trace):
    s = summarize(trace, step_seconds=0.01)
    assert s["kernels"] == 5
    assert s["kernel_s"] == pytest.approx(570e-6)
    assert s["gpu_busy_s"] == pytest.approx(520e-6)  # the dequant overlaps the gemm by 50 µs
    assert s["profiled_span_s"] == pytest.approx(1000e-6)
    assert s["busy_share_of_profiled_span"] == pytest.approx(0.52)
    assert s["busy_share_of_unprofiled_step"] == pytest.approx(0.052)
    assert list(s["categories"])[0] == "matmul"
    assert s["categories"]["attention"] == pytest.approx(100e-6)
    assert s["top_kernels"][0]["category"] == "matmul"
    text = format_summary(s)
    assert "GPU busy" in text and "4-bit dequantize" in text


def test_summarize_refuses_a_trace_without_kernels(tmp_path):
    path = tmp_path / "t.json"
    path.write_text(json.dumps([{"ph": "X", "cat": "cpu_op", "name": "x", "ts": 0, "dur": 1}]))
    with pytest.raises(SystemExit, match="no CUDA kernels"):
        summarize(path)


def test_train_benchmark_uses_unprofiled_steps(trace):
    from benchmarks.train_throughput import summarize_profile

    logs = [
        {"tokens/trainable": 100},
        {"tokens/trainable": 300, "tokens/train_per_sec_per_gpu": 100},  # 2 s
        {"tokens/trainable": 700, "tokens/train_per_sec_per_gpu": 100},  # 4 s
        {"tokens/trainable": 1000, "tokens/train_per_sec_per_gpu": 100},  # 3 s
        {"tokens/trainable": 1100, "tokens/train_per_sec_per_gpu": 1},
    ]  # the profiled step: left out
    summary = summarize_profile(trace.parent, logs)
    assert summary["unprofiled_step_s"] == 3
    assert not trace.exists()  # the large trace is dropped once summarised
    assert summarize_profile(trace.parent, logs) is None
