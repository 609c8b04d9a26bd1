"""The run file `make run` writes into its data dir (`.devdata/run.json`) and removes at stop: where
the app, the emulator and storage of this local run are, the settings file and the overrides in
effect, the functions and the banner, so that `python -m connector status|tail|send|trigger` reach
the same services without flags. Declared here once; `devtools.run` writes it, the CLI reads it."""
from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

RUN_FILE = "run.json"
DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2] / ".devdata"


@dataclass(frozen=True)
class LocalRun:
    """One `make run` as the CLI needs it (`storage`: the connection string of its Azurite)."""

    pid: int
    host_url: str
    public_url: str
    storage: str
    emulator_url: str = ""
    ca_bundle: str = ""
    settings_file: str = ""
    overrides: dict[str, str] = field(default_factory=dict)
    banner: list[str] = field(default_factory=list)

    def alive(self) -> bool:
        """The process that wrote the file still runs."""
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def run_file(data_dir: Path | None = None) -> Path:
    return (data_dir or DEFAULT_DATA_DIR) / RUN_FILE


def write_run(data_dir: Path, run: LocalRun) -> Path:
    """Write the run file atomically; its path."""
    path = run_file(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".tmp")
    partial.write_text(json.dumps(asdict(run), indent=2), encoding="utf-8")
    partial.replace(path)
    return path


def read_run(data_dir: Path | None = None) -> LocalRun | None:
    """The run file's run, or None when there is none (or it is unreadable)."""
    try:
        raw = json.loads(run_file(data_dir).read_text(encoding="utf-8"))
        return LocalRun(**raw)
    except (OSError, ValueError, TypeError):
        return None


def remove_run(data_dir: Path, pid: int) -> None:
    """Remove the run file if this process wrote it."""
    run = read_run(data_dir)
    if run is not None and run.pid == pid:
        with contextlib.suppress(OSError):
            run_file(data_dir).unlink()
