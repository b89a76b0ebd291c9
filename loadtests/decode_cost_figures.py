"""``loadtests.decode_cost``'s summaries as figures files (``loadtests/figures.py`` renders them into the docs)."""

from __future__ import annotations


def figures_of(mode: str, s: dict) -> dict:
    """The summary as a figures file (loadtests/figures.py)."""
    fig = {key: s[key] for key in ("date", "machine", "command")}
    fig["source"] = f"loadtests/results/decode_cost/{mode}.json"
    if mode == "server":
        b = s["burst"]
        fig["title"] = f"Decode cost against a running server ({s['target']})."
        fig["columns"] = ["request", "answer", "seconds"]
        fig["rows"] = [[f"scan bomb, 7000x7000 JPEG, {name}", f"{r['status']} {r['type']}", f"{r['seconds']:.3f}"]
                       for name, r in s["bombs"].items()]  # fmt: skip
        fig["rows"] += [
            ["valid 640x480 JPEG alone (median of 5)", "200", f"{s['valid_alone_s']:.3f}"],
            ["the same sent 0.2 s after four scan bombs (median of 3)", "200", f"{s['valid_beside_four_bombs_s']:.3f}"],
            [f"{b['images']} 16-bit 7000x7000 PNGs ({b['image_bytes']} bytes) at once", str(b["statuses"]),
             f"{b['seconds']:.2f}"],
        ]  # fmt: skip
        bombs = ", ".join(f"{r['seconds']:.3f} s" for r in s["bombs"].values())
        fig["headline"] = [
            ["scan-bomb JPEGs of 0.5 and 2 MB refused (422)", bombs],
            [f"{b['images']} 16-bit 7000x7000 PNGs at once: workers' RSS growth", f"{b['growth_mib']} MiB"],
        ]
        fig["notes"] = [
            f"Workers' RSS (workers and their decode children) over the burst: {b['baseline_rss_mib']} MiB before, "
            f"{b['peak_rss_mib']} MiB at the peak: +{b['growth_mib']} MiB.",
            f"Worker restarts during the run: {s['worker_restarts']}.",
        ]
    elif mode == "overhead":
        fig["title"] = (
            "The decode guard's cost per image on the normal path (in-process, median of 40 interleaved runs each)."
        )
        fig["columns"] = ["image", "decoded in-process ms", "through the guard's child ms", "added ms"]
        fig["rows"] = [[name, f"{r['in_process_ms']:.2f}", f"{r['guarded_ms']:.2f}", f"{r['added_ms']:.2f}"]
                       for name, r in s.items() if isinstance(r, dict) and "added_ms" in r]  # fmt: skip
        added = [float(row[3]) for row in fig["rows"]]
        fig["headline"] = [["decode guard's added time per image", f"{min(added):.1f} to {max(added):.1f} ms"]]
        fig["notes"] = [
            f"The round trip alone (the first image's header read, sent to a child that decodes nothing and answers "
            f"a 112x112 crop): {s['round_trip_ms']:.2f} ms.",
            "One torch thread, as each worker of the checked-in configuration on 2 cores. With two, torch's second "
            "thread spins after each tensor operation and took the core the child decodes on: 4-12 ms added per "
            "image in a run at 2 threads.",
            "Run at nice 5 beside a training process at nice 0 on the 2-core VM.",
        ]
    else:
        fig["title"] = "Peak memory of one decode (a fresh process per image) and the memory budget's estimate."
        fig["columns"] = ["image", "file MB", "peak MiB", "estimate MiB"]
        fig["rows"] = [[name, f"{r['file_mb']:.2f}", str(r["peak_mib"]), str(r["estimate_mib"])]
                       for name, r in s.items() if isinstance(r, dict) and "peak_mib" in r]  # fmt: skip
        grey = next((r for name, r in s.items() if name.startswith("16-bit")), {})
        fig["headline"] = [["peak memory decoding a 16-bit 7000x7000 PNG", f"{grey.get('peak_mib')} MiB"]]
    return fig
