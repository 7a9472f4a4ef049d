"""Snakemake logger plugin ``pfs`` (``--logger pfs``; profiles/default and profiles/slurm set it): the rich plugin's
progress panel plus one short line per finished job with the run's progress and time left. The logic is in
pfs.workflow.terminal; this module is only what Snakemake's logger registry looks for (a module named
``snakemake_logger_plugin_<name>`` with a ``LogHandler``)."""

from snakemake_logger_plugin_rich import LogHandler as RichLogHandler

from pfs.workflow.terminal import PfsEventHandler


class LogHandler(RichLogHandler):
    def __post_init__(self) -> None:
        super().__post_init__()
        old = self.event_handler
        self.event_handler = PfsEventHandler(
            console=old.console, progress=old.progress, live_display=old.progress_display.live_display,
            dryrun=old.dryrun, printshellcmds=old.printshellcmds, show_failed_logs=old.show_failed_logs,
            verbose=old.verbose)
