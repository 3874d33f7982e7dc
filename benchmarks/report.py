"""Turn run.py's results into ratios, a terminal table and BENCHMARKS.md."""

from __future__ import annotations


def add_ratios(result: dict) -> None:
    """Set each ok row's "ratio": its time over the fastest ok peer's (1.0 is fastest)."""
    for group in _groups(result["steps"], "workload"):
        best = min((r["median_s"] for r in group if r["status"] == "ok"), default=None)
        for row in group:
            if row["status"] == "ok":
                row["ratio"] = row["median_s"] / best
    for group in _groups(result["gemm"], "size"):
        best = max((r["gflops"] for r in group if r["status"] == "ok"), default=None)
        for row in group:
            if row["status"] == "ok":
                row["ratio"] = best / row["gflops"]
    previous = None
    for row in result["compile"]:
        if row["status"] == "ok" and previous is not None:
            row["ratio"] = row["seconds"] / previous
        previous = row["seconds"] if row["status"] == "ok" else None


def _groups(rows: list[dict], key: str) -> list[list[dict]]:
    groups: dict = {}
    for row in rows:
        groups.setdefault(row[key], []).append(row)
    return list(groups.values())


def _number(value, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def tables(result: dict) -> list[tuple[str, list[str], list[list[str]]]]:
    """Return (title, header, rows) for every benchmark that was run."""
    out = []
    for group in _groups(result["steps"], "workload"):
        header = [
            "peer",
            "median ms",
            "x fastest",
            "first step s",
            "warm-cache first s",
            "peak RSS MiB",
            "first loss",
            "status",
        ]
        rows = [
            [
                r["peer"],
                _number(r.get("median_s") and 1e3 * r["median_s"], 1),
                _number(r.get("ratio"), 2),
                _number(r.get("first_s"), 2),
                _number(r.get("first_warm_s"), 2),
                _number(r.get("peak_rss_mib"), 0) if r["status"] == "ok" else "-",
                _number(r.get("first_loss"), 3),
                _status(r),
            ]
            for r in group
        ]
        out.append((f"Training step: {group[0]['description']}", header, rows))
    if result["compile"]:
        header = ["T", "compile s", "x previous T", "peak RSS MiB", "status"]
        rows = [
            [
                str(r["steps"]),
                _number(r.get("seconds"), 2),
                _number(r.get("ratio"), 2),
                _number(r.get("peak_rss_mib"), 0) if r["status"] == "ok" else "-",
                _status(r),
            ]
            for r in result["compile"]
        ]
        out.append(
            ("Compile time, LSTM forward and backward, NumPy backend", header, rows)
        )
    if result["gemm"]:
        header = ["size", "peer", "GFLOP/s", "x fastest", "ms", "status"]
        rows = [
            [
                str(r["size"]),
                r["peer"],
                _number(r.get("gflops"), 1),
                _number(r.get("ratio"), 2),
                _number(r.get("seconds") and 1e3 * r["seconds"], 2),
                _status(r),
            ]
            for r in result["gemm"]
        ]
        out.append(("float32 GEMM, square matrices", header, rows))
    return out


def _status(row: dict) -> str:
    if row["status"] == "ok" or "error" not in row:
        return row["status"]
    return f"{row['status']}: {row['error']}"[:160]


def text(result: dict) -> str:
    lines = []
    for title, header, rows in tables(result):
        widths = [
            max(len(c) for c in column) for column in zip(header, *rows, strict=True)
        ]
        lines += ["", title]
        for cells in [header, *rows]:
            lines.append(
                "  ".join(
                    c.ljust(w) for c, w in zip(cells, widths, strict=True)
                ).rstrip()
            )
    lines.append("")
    lines.append(f"{result['seconds']:.0f} s in all; command: {result['command']}")
    return "\n".join(lines)


def markdown(result: dict) -> str:
    machine, versions = result["machine"], result["versions"]
    lines = [
        "# Benchmarks",
        "",
        "The latest full run of `benchmarks/run.py`; benchmarks/README.md says what each",
        "row measures. Times are medians of the timed steps after warm-up. The first",
        "step includes building the model (declaration, compile, kernel builds).",
        '"x fastest" divides each time by the fastest peer\'s in the same table.',
        "",
        "Command:",
        "",
        "```sh",
        result["command"],
        "```",
        "",
        f"- CPU: {machine['cpu']}, {machine['cores']} cores; {machine['system']}",
        f"- Threads per peer: {result['threads']}",
        f"- Load average (1, 5, 15 min) at start: "
        f"{', '.join(f'{x:.2f}' for x in machine['load_average_start'])}; at end: "
        f"{', '.join(f'{x:.2f}' for x in machine['load_average_end'])}",
        f"- NumPy BLAS: {machine['numpy_blas']}",
        f"- OpenCL devices: {'; '.join(machine['opencl']) or 'none'}",
        "- Versions: Python "
        + machine["python"]
        + ", "
        + ", ".join(f"{name} {version}" for name, version in versions.items()),
        "",
    ]
    for title, header, rows in tables(result):
        lines += [
            f"## {title}",
            "",
            "| " + " | ".join(header) + " |",
            "|" + "---|" * len(header),
        ]
        lines += [
            "| " + " | ".join(c.replace("|", "/") for c in cells) + " |"
            for cells in rows
        ]
        lines.append("")
    return "\n".join(lines)
