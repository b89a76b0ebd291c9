"""make bench's report: the best configuration, the Markdown table and the throughput-vs-latency plot."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def best_config(served: list[dict], p99_target_ms: float) -> dict:
    within = [r for r in served if r.get("p99_ms", float("inf")) < p99_target_ms and not r["errors"]]
    return max(within or served, key=lambda r: r["img_s"])


def table(paths: dict[str, dict], ab: dict | None) -> str:
    rows = [
        "| configuration | img/s | p50 ms | p95 ms | p99 ms | requests | errors | served/ceiling | vs naive |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for path in paths.values():
        naive = path["naive"]
        for r in [*path["configs"], naive]:
            efficiency = f"{r['efficiency']:.2f}" if "efficiency" in r else "-"
            vs_naive = r["img_s"] / naive["img_s"] if naive["img_s"] else 0.0
            rows.append(
                f"| {r['name']} | {r['img_s']:.2f} | {r.get('p50_ms', 0):.0f} | {r.get('p95_ms', 0):.0f} | "
                f"{r.get('p99_ms', 0):.0f} | {r['requests']} | {r['errors']} | {efficiency} | {vs_naive:.2f}x |"
            )
    rows.append("")
    for path in paths.values():
        ceilings = ", ".join(f"batch {b}: {v:.2f}" for b, v in sorted(path["ceiling_img_s_by_batch"].items()))
        rows.append(
            f"- {path['precision']}: ceiling img/s {ceilings}; preprocessing {path['preprocess_ms_per_image']:.1f} "
            f"ms/image (not in the ceiling); best served {path['served_img_s']:.2f} img/s = "
            f"{path['speedup_vs_baseline']:.2f}x the baseline, efficiency {path['efficiency']:.2f}, "
            f"{path['vs_naive']:.2f}x naive"
        )
    if ab:
        rows.append(
            f"- ab -k -c {ab['concurrency']} -n {ab['requests']} ({ab['precision']}, checked-in configuration): "
            f"{ab['requests_per_second']:.1f} req/s, p50 {ab['p50_ms']} ms, p99 {ab['p99_ms']} ms, "
            f"{ab['failed']} failed, {ab['non_2xx']} non-2xx"
        )
    rows += ["", "Where the CPU went while measuring (shares of all cores' time; `other` = every other process):", ""]
    for path in paths.values():
        for r in [*path["configs"], path["naive"]]:
            cpu = ", ".join(f"{role} {share:.2f}" for role, share in r.get("cpu", {}).items())
            rows.append(f"- {r['name']}: {cpu or 'not measured'}")
    rows += ["", "Where TorchServe's workers' time went (the handler's counters; shares of the window x workers):", ""]
    for path in paths.values():
        for r in path["configs"]:
            spent = ", ".join(f"{k} {v}" for k, v in r.get("worker_time", {}).items())
            rows.append(f"- {r['name']}: {spent or 'not measured'}")
    return "\n".join(rows) + "\n"


def plot(paths: dict[str, dict], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(8, 5))
    for result, colour in zip(paths.values(), ("tab:blue", "tab:green", "tab:purple", "tab:orange"), strict=False):
        for r in result["configs"]:
            c, xy = r["config"], (r.get("p95_ms", 0), r["img_s"])
            ax.scatter(*xy, color=colour)
            label = f"b{c['batch']} d{c['delay_ms']} w{c['workers']}"
            ax.annotate(label, xy, fontsize=8, xytext=(4, -10), textcoords="offset points")
        naive = result["naive"]
        legend = f"{result['precision']}: served (dots), naive (square)"
        ax.scatter(naive.get("p95_ms", 0), naive["img_s"], color=colour, marker="s", label=legend)
        ax.axhline(max(result["ceiling_img_s_by_batch"].values()), linestyle="--", linewidth=0.8, color=colour)
    ax.set(xlabel="p95 latency (ms)", ylabel="throughput (images/s)")
    ax.set_xlim(left=0)
    ax.set_title("VGG16-BN (random weights) on CPU; dashed: best ceiling; b=batch d=delay ms w=workers", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
