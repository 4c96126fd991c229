"""What a command prints, and where.

* Messages (:meth:`Console.show`) go to stdout; warnings (:meth:`Console.warn`) to stderr, each
  distinct warning once per run; ``-q/--quiet`` keeps only warnings and errors.
* Under torchrun only rank 0 prints (the other ranks compute the same numbers).
* A run directory's ``train.log`` (:meth:`Console.attach`) records every message and warning of
  the run, whatever the terminal shows.
* The progress bar (:class:`Progress`) is drawn on stderr only when stderr is a terminal, fitted to
  its width, with messages printed above it.
"""
from __future__ import annotations

import os
import shutil
import sys
import time
from typing import Optional, TextIO


def _is_rank_zero() -> bool:
    """False in a torchrun process other than rank 0 (WORLD_SIZE > 1 and RANK != 0)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) <= 1 or int(os.environ.get("RANK", "0")) == 0
    except ValueError:
        return True


class Console:
    def __init__(self):
        self.quiet = False
        self.bar: Optional["Progress"] = None
        self.log_file: Optional[TextIO] = None
        self.warned: set = set()

    @property
    def speaks(self) -> bool:
        return _is_rank_zero()

    # -- the terminal --------------------------------------------------------------------------
    def _emit(self, text: str, stream) -> None:
        bar = self.bar
        if bar is not None:
            bar.clear()
        try:
            stream.write(text + "\n")
            stream.flush()
        except BrokenPipeError:   # the reader went away (`| head`): the command goes on, unheard
            silence(stream)
        if bar is not None:
            bar.draw()

    def show(self, msg: str) -> None:
        """A message on stdout (not with --quiet, not on a rank other than 0)."""
        if self.speaks and not self.quiet:
            self._emit(msg, sys.stdout)

    def result(self, text: str) -> None:
        """Output asked for as data (``--json -``): stdout even with --quiet; rank 0 only."""
        if self.speaks:
            self._emit(text, sys.stdout)

    def info(self, msg: str) -> None:
        """:meth:`show` and :meth:`record`."""
        self.show(msg)
        self.record(msg)

    def warn(self, msg: str, key: Optional[str] = None) -> bool:
        """A warning on stderr and in the run's log, once per distinct ``key`` (default: the text)
        per run; returns whether it was shown (its first time)."""
        key = msg if key is None else key
        if key in self.warned:
            return False
        self.warned.add(key)
        if self.speaks:
            self._emit(msg, sys.stderr)
        self.record(msg)
        return True

    def showwarning(self, message, category, filename, lineno, file=None, line=None) -> None:
        """Python's warnings (``warnings.showwarning``): one line through :meth:`warn`."""
        self.warn(f"warning: {' '.join(str(message).split())}")

    # -- the run's log file --------------------------------------------------------------------
    def attach(self, path: str) -> None:
        """Record from now on into ``path`` (appended: a resumed run's log continues), with the
        mode the umask gives; a new run: warnings are shown again once."""
        self.detach()
        self.log_file = open(path, "a", encoding="utf-8")
        self.warned = set()

    def detach(self) -> None:
        if self.log_file is not None:
            try:
                self.log_file.close()
            finally:
                self.log_file = None

    def record(self, msg: str) -> None:
        """``msg`` into the attached log file only (with the time)."""
        if self.log_file is None:
            return
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        try:
            for line in str(msg).splitlines() or [""]:
                self.log_file.write(f"{stamp} {line}\n")
            self.log_file.flush()
        except OSError as e:   # a full disk: the run itself reports what fails next; no log from here
            name = self.log_file.name
            try:
                self.log_file.close()
            except OSError:
                pass
            self.log_file = None
            if self.speaks:
                self._emit(f"warning: cannot write {name} ({e.strerror or e}); the log stops here",
                           sys.stderr)


console = Console()


def silence(stream) -> None:
    """Point ``stream``'s file descriptor at /dev/null (its reader is gone): later writes and the
    final flush at exit succeed without a sound."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


class Progress:
    """A one-line progress bar on stderr, drawn only when stderr is a terminal (and not with
    --quiet, not on a rank other than 0). It fits the terminal's width (read at every draw); the
    rate is a moving average over the updates (smoothing 0.3, like tqdm's), and
    :meth:`restart_clock` leaves out time spent between two updates on something else (an
    evaluation), so the rate is that of the counted steps."""

    SMOOTHING = 0.3

    def __init__(self, total: int, desc: str = "", enabled: bool = True, start: int = 0,
                 stream: Optional[TextIO] = None):
        self.total, self.n, self.desc = total, start, desc
        self.stream = stream or sys.stderr
        self.enabled = (enabled and console.speaks and not console.quiet
                        and getattr(self.stream, "isatty", lambda: False)())
        self.postfix = ""
        self.rate: Optional[float] = None
        self.t_last = time.perf_counter()
        self.last_draw = 0.0
        self.drawn = False
        if self.enabled:
            console.bar = self

    def restart_clock(self) -> None:
        self.t_last = time.perf_counter()

    def update(self, n: int = 1, postfix: str = "") -> None:
        self.n += n
        if postfix:
            self.postfix = postfix
        now = time.perf_counter()
        dt, self.t_last = now - self.t_last, now
        if dt > 0:
            r = n / dt
            self.rate = r if self.rate is None else self.SMOOTHING * r + (1 - self.SMOOTHING) * self.rate
        if not self.enabled:
            return
        if now - self.last_draw >= 0.1 or self.n >= self.total:
            self.last_draw = now
            self.draw()
        if self.n >= self.total:
            self.close()

    def line(self, width: int) -> str:
        rate = f"{self.rate:.1f}it/s" if self.rate else "?it/s"
        left = self.total - self.n
        eta = f"eta {left / self.rate:.0f}s" if self.rate else "eta ?"
        counts = f" {self.n}/{self.total} {rate} {eta}" + (f" {self.postfix}" if self.postfix else "")
        head = f"{self.desc} " if self.desc else ""
        room = width - 1 - len(head) - len(counts) - 2
        if room >= 10:
            filled = int(room * self.n / max(self.total, 1))
            text = f"{head}[{'#' * filled}{'-' * (room - filled)}]{counts}"
        else:
            text = head + counts.strip()
        return text[:width - 1]

    def draw(self) -> None:
        if not self.enabled:
            return
        width = shutil.get_terminal_size((80, 24)).columns
        self.stream.write("\r" + self.line(width).ljust(width - 1))
        self.stream.flush()
        self.drawn = True

    def clear(self) -> None:
        if self.enabled and self.drawn:
            width = shutil.get_terminal_size((80, 24)).columns
            self.stream.write("\r" + " " * (width - 1) + "\r")
            self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.drawn:
            self.stream.write("\n")
            self.stream.flush()
        self.drawn = False
        if console.bar is self:
            console.bar = None
