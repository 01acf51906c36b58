"""The offload-profile reports as tables: one :class:`View` per report, shown with rich or written as
Markdown (the form ``docs/offload.md`` records), so the terminal and the docs show the same numbers."""

from __future__ import annotations

from dataclasses import dataclass, field

from cosmos_cli.offload.profile import stage_seconds

GIB = 2**30
SHORT = {
    "text_guardrail": "guard",
    "text_encoder": "T5",
    "video_tokenizer": "tok",
    "ar_model": "AR",
    "diffusion_decoder": "DD",
    "video_guardrail": "vguard",
}


@dataclass
class View:
    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    caption: str = ""
    notes: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        lines = [f"**{self.title}**", "", "| " + " | ".join(self.columns) + " |"]
        lines.append("|" + "|".join("---" for _ in self.columns) + "|")
        for row in self.rows:
            lines.append("| " + " | ".join(row + [""] * (len(self.columns) - len(row))) + " |")
        if self.caption:
            lines += ["", self.caption]
        if self.notes:
            lines += [""] + [f"- {note}" for note in self.notes]
        return "\n".join(lines) + "\n"

    def show(self) -> None:
        """Print with rich; when stdout is a file or a pipe the table keeps its width (rich would squeeze
        it into 80 columns)."""
        from rich.console import Console
        from rich.table import Table

        from cosmos_cli.console import stdout

        table = Table(title=self.title, caption=self.caption or None)
        for i, name in enumerate(self.columns):
            table.add_column(name, justify="left" if i < 2 or name == "NVIDIA" else "right")
        for row in self.rows:
            table.add_row(*row)
        console = stdout if stdout.is_terminal or stdout.quiet else Console(file=stdout.file, width=200)
        console.print(table)
        for note in self.notes:
            stdout.print(note, highlight=False, soft_wrap=True)


def offloaded(policy: dict) -> str:
    """Short list of the stages off the GPU: ``guard,T5,DD(disk)``, ``DD(stream)``; ``all`` / ``-`` for all
    (``cpu``) / none."""
    if policy and all(v == "cpu" for v in policy.values()):
        return "all"
    off = [SHORT.get(k, k) + (f"({v})" if v in ("disk", "stream") else "") for k, v in policy.items() if v != "gpu"]
    return ",".join(off) or "-"


def plan_view(report: dict) -> View:
    gib, host = report["gpu_memory_gib"], report["host_memory_gib"]
    view = View(
        title=f"ESTIMATE (no GPU run): {report['model']}, batch {report['batch_size']}, {gib:.0f} GiB GPU, "
        f"{host:.0f} GiB free host RAM",
        columns=[
            "strategy",
            "offloaded",
            "peak",
            "needs",
            "fits GPU",
            "host",
            "fits host",
            "moved",
            "bring-in s",
            "NVIDIA",
        ],  # fmt: skip
        caption="GiB. peak: most bytes allocated at once (steady state: every gpu stage resident); needs: "
        "peak x1.1 + 0.75 GiB CUDA context; host: pinned copies of the cpu and stream stages; moved / bring-in s: "
        "per batch at an assumed 20 GB/s host->GPU (disk 2 GB/s); a stream stage copies its blocks once per "
        "forward pass, counted as if no copy overlapped compute.",
    )
    for row in report["rows"]:
        view.rows.append([
            row["strategy"], offloaded(row["policy"]), f"{row['peak_gib']:.1f}", f"{row['needs_gib']:.1f}",
            "yes" if row["fits"] else "no", f"{row['host_gib']:.1f}",
            "yes" if row["host_gib"] <= 0.9 * host else "no", f"{row['moved_gib_per_batch']:.1f}",
            f"{row['bring_in_s_per_batch']:.1f}", row["nvidia"] or "-",
        ])  # fmt: skip
    stages = ", ".join(f"{SHORT[s['name']]} {s['weights'] / GIB:.2f} + {s['work'] / GIB:.2f}" for s in report["stages"])
    view.notes.append(f"stage weights + work (GiB): {stages}")
    rec = report["recommended"]
    view.notes.append(
        "no placement fits this GPU memory"
        if rec is None
        else f"fastest placement that fits: cosmos-cli generate {rec['flags']}"
    )
    return view


def measured_view(report: dict) -> View:
    title = f"MEASURED: {report['model']} on {report['device']} ({report['load_format']} weights"
    if report["ar_tokens"]:
        title += f", {report['ar_tokens']} AR tokens generated"
    if report["dd_steps"]:
        title += f", {report['dd_steps']} diffusion steps"
    if report.get("partial"):
        title += "; PARTIAL: the run stopped before every row was measured"
    view = View(
        title=title + ")",
        columns=[
            "row",
            "offloaded",
            "peak alloc",
            "peak resv",
            "plan",
            *SHORT.values(),
            "moved",
            "bring-in s",
            "total s",
            "full-length s",
            "NVIDIA",
        ],  # fmt: skip
        caption="GiB and seconds of one batch after set-up (every stage loaded or parked). Stage seconds include "
        "bringing the stage in and putting it away. full-length: the AR decode and diffusion steps scaled to "
        "full length from the measured rates.",
    )
    for row in report["rows"]:
        if row["error"]:
            view.rows.append([row["row"], offloaded(row["policy"]), row["error"]])
            continue
        seconds = stage_seconds(row)
        stages = row["stages"].values()
        view.rows.append([
            row["row"], offloaded(row["policy"]), f"{row['peak_allocated'] / GIB:.1f}",
            f"{row['peak_reserved'] / GIB:.1f}", f"{row['plan_peak'] / GIB:.1f}",
            *[f"{seconds[name]:.1f}" if name in seconds else "-" for name in SHORT],
            f"{sum(s['bytes_moved'] for s in stages) / GIB:.1f}", f"{sum(s['bring_in_seconds'] for s in stages):.1f}",
            f"{row['total_s']:.1f}", f"{row['full_length_s']:.1f}", row["nvidia"] or "-",
        ])  # fmt: skip
    view.notes += _summary_notes(report)
    return view


def _summary_notes(report: dict) -> list[str]:
    summary = report.get("summary") or {}
    notes = []
    for comp in summary.get("comparisons", []):
        notes.append(
            f"{comp['row']} vs {comp['baseline']}: {comp['extra_s']:+.1f} s per batch, AR compilation left out "
            f"({100 * comp['extra_fraction']:+.1f}% of this run; {100 * comp['extra_fraction_full_length']:+.1f}% "
            "at full length, extrapolated)"
        )
    for check in summary.get("full_offload", []):
        verdict = "within" if check["ar_stage_within_bound"] else "ABOVE"
        whole = ""
        if "peak_within_bound" in check:
            whole = "; the whole peak " + ("within" if check["peak_within_bound"] else "ABOVE") + " it"
        notes.append(
            f"{check['row']}: peak {check['peak_allocated'] / GIB:.1f} GiB in {check['peak_stage']}; AR stage "
            f"{check['ar_stage_peak_allocated'] / GIB:.1f} GiB, {verdict} AR weights + KV cache + 2 GiB = "
            f"{check['ar_bound'] / GIB:.1f} GiB{whole}"
        )
    for card, row in summary.get("by_card", {}).items():
        notes.append(f"{card}: fastest measured strategy that fits: {row or 'none'}")
    if report.get("h2d_gb_per_s"):
        notes.append(f"pinned host->GPU copy rate: {report['h2d_gb_per_s']:.1f} GB/s")
    return notes
