#!/usr/bin/env python3
"""Render the voice prompts of voicebot/prompts/manifest.toml to telephone WAV files.

Each entry becomes ``<out>/<lang>/<name>.wav``: 8000 Hz, mono, 16-bit signed PCM,
leading/trailing silence trimmed, peak-normalised to -3 dBFS. Synthesis uses
espeak-ng, conversion uses sox (Debian: ``apt-get install espeak-ng sox``).

Examples::

    python voicebot/prompts/make_prompts.py                       # every language, every prompt
    python voicebot/prompts/make_prompts.py --lang ru --only greeting
    python voicebot/prompts/make_prompts.py --out /tmp/prompts    # render elsewhere
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

PROMPTS_DIR = Path(__file__).resolve().parent
DEFAULT_MANIFEST = PROMPTS_DIR / "manifest.toml"
LANGUAGES = ("ru", "uk", "en")
DEFAULT_SPEED_WPM = 150

# sox effects applied after synthesis: trim silence at both ends (anything below
# 0.5 % of full scale lasting less than 20 ms counts as sound ending), resample to
# 8 kHz with sox's high-quality resampler, then peak-normalise to -3 dBFS.
SOX_EFFECTS = (
    "silence", "1", "0.02", "0.5%",
    "reverse",
    "silence", "1", "0.02", "0.5%",
    "reverse",
    "rate", "-h", "8000",
    "gain", "-n", "-3",
)  # fmt: skip


class MakePromptsError(Exception):
    """A problem that stops rendering; the message is shown to the user."""


@dataclass(frozen=True)
class Manifest:
    voices: Mapping[str, str]
    speed_wpm: int
    texts: Mapping[str, Mapping[str, str]]  # language -> prompt name -> text


def load_manifest(path: Path) -> Manifest:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise MakePromptsError(f"cannot read manifest {path}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise MakePromptsError(f"manifest {path} is not valid TOML: {exc}") from exc

    tts = data.get("tts", {})
    voices = {lang: str(voice) for lang, voice in tts.get("voices", {}).items()}
    speed = int(tts.get("speed", DEFAULT_SPEED_WPM))
    texts: dict[str, dict[str, str]] = {}
    for lang in LANGUAGES:
        table = data.get(lang)
        if not isinstance(table, dict) or not table:
            raise MakePromptsError(f"manifest {path} has no [{lang}] table of prompt texts")
        for name, text in table.items():
            if not isinstance(text, str) or not text.strip():
                raise MakePromptsError(
                    f"manifest {path}: [{lang}] {name} must be a non-empty string"
                )
        texts[lang] = dict(table)
        voices.setdefault(lang, lang)
    return Manifest(voices=voices, speed_wpm=speed, texts=texts)


def require_tools() -> tuple[str, str]:
    espeak = shutil.which("espeak-ng")
    sox = shutil.which("sox")
    missing = [name for name, found in (("espeak-ng", espeak), ("sox", sox)) if found is None]
    if espeak is None or sox is None:
        raise MakePromptsError(
            f"{' and '.join(missing)} not found on PATH; install with:"
            " apt-get install -y espeak-ng sox"
        )
    return espeak, sox


def run(cmd: Sequence[str]) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip()
        raise MakePromptsError(f"command failed ({result.returncode}): {' '.join(cmd)}\n{detail}")


def render(
    text: str, voice: str, speed_wpm: int, out: Path, *, espeak: str, sox: str, tmp: Path
) -> None:
    raw = tmp / f"{out.stem}.raw.wav"
    # -b 1: the text is UTF-8; "--" so a text starting with "-" is not an option.
    run([espeak, "-b", "1", "-v", voice, "-s", str(speed_wpm), "-w", str(raw), "--", text])
    out.parent.mkdir(parents=True, exist_ok=True)
    sox_format = ["-r", "8000", "-c", "1", "-b", "16", "-e", "signed-integer"]
    # -D: no dither, so re-rendering an unchanged text gives a byte-identical file.
    run([sox, "-D", str(raw), *sox_format, str(out), *SOX_EFFECTS])


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Render prompts/manifest.toml to 8 kHz mono 16-bit WAVs with espeak-ng + sox."
    )
    parser.add_argument(
        "--lang",
        action="append",
        choices=LANGUAGES,
        help="language to render (repeatable; default: all)",
    )
    parser.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help="render only this prompt name (repeatable; default: all)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=PROMPTS_DIR,
        metavar="DIR",
        help="output directory; files go to DIR/<lang>/<name>.wav (default: %(default)s)",
    )
    parser.add_argument(
        "--manifest",
        type=Path,
        default=DEFAULT_MANIFEST,
        metavar="FILE",
        help="manifest to read (default: %(default)s)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        espeak, sox = require_tools()
        manifest = load_manifest(args.manifest)
        languages: list[str] = args.lang or list(LANGUAGES)
        for name in args.only or []:
            missing_in = [lang for lang in languages if name not in manifest.texts[lang]]
            if missing_in:
                raise MakePromptsError(
                    f"--only {name}: no such prompt in [{', '.join(missing_in)}] of {args.manifest}"
                )
        count = 0
        with tempfile.TemporaryDirectory(prefix="make_prompts_") as tmpdir:
            for lang in languages:
                for name, text in manifest.texts[lang].items():
                    if args.only and name not in args.only:
                        continue
                    out = args.out / lang / f"{name}.wav"
                    render(
                        text,
                        manifest.voices[lang],
                        manifest.speed_wpm,
                        out,
                        espeak=espeak,
                        sox=sox,
                        tmp=Path(tmpdir),
                    )
                    print(f"{out}: {text}")
                    count += 1
    except MakePromptsError as exc:
        print(f"make_prompts: error: {exc}", file=sys.stderr)
        return 1
    print(f"rendered {count} prompt(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
