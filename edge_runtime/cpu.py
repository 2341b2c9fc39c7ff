"""What this CPU is: the facts that the runtime's INT8 kernel choice and its per-device fps cache depend on."""
from __future__ import annotations

import os
import platform
from functools import lru_cache
from pathlib import Path

X86_MACHINES = ("x86_64", "amd64", "i386", "i686")


@lru_cache(maxsize=1)
def cpuinfo() -> dict[str, str]:
    """The first value of each /proc/cpuinfo field, keys lower-cased; {} where there is no such file."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip().lower(), value.strip())
    except OSError:
        pass
    return fields


def has_vnni(fields: dict[str, str]) -> bool:
    """AVX512-VNNI or AVX-VNNI: int8 dot products summed straight into int32."""
    return any(flag in ("avx512_vnni", "avx_vnni") for flag in fields.get("flags", "").split())


def int8_pair_sums_saturate(machine: str | None = None, fields: dict[str, str] | None = None) -> bool:
    """Whether ONNX Runtime's default U8S8 INT8 kernels are inexact here: on x86 without VNNI they use
    VPMADDUBSW, whose int16 sums of product pairs saturate. Unknown flags on x86 count as no VNNI."""
    machine = (machine or platform.machine()).lower()
    return machine in X86_MACHINES and not has_vnni(cpuinfo() if fields is None else fields)


def device_id() -> str:
    """CPU model, architecture and core count: what the measured fps depends on. A VM may name its x86 CPU
    only "AMD EPYC"; its family/model numbers and whether it has VNNI (INT8 dot products) tell apart CPUs
    whose INT8 speeds differ several times (benchmarks/artifacts.py on two such "AMD EPYC"s)."""
    fields = cpuinfo()
    # x86: "model name"; a Raspberry Pi: "Model" (the board, e.g. "Raspberry Pi 5 Model B Rev 1.0").
    model = fields.get("model name") or (fields.get("model") if not fields.get("model", "").isdigit() else "") \
        or fields.get("hardware") or platform.processor()
    if fields.get("cpu family"):
        vnni = "vnni" if has_vnni(fields) else "no vnni"
        model = f"{model} (family {fields['cpu family']} model {fields.get('model', '?')}, {vnni})"
    return f"{platform.machine()}|{model}|{os.cpu_count()}"
