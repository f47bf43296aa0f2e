"""Voice prompts: load 8 kHz mono PCM16 WAVs once, hand out pre-encoded 20 ms frames.

Where a prompt comes from, per name:

1. ``override_dir/<name>.wav`` if ``override_dir`` is set (``ivr.prompts_dir``) and the
   file exists -- a company's own recordings win;
2. otherwise ``base_dir/<language>/<name>.wav``; ``base_dir`` defaults to the prompts
   shipped inside the package (``voicebot/prompts/``), found with :mod:`importlib.resources`
   so that a wheel, an editable install and a source checkout all find the same files.

Every file must be a RIFF/WAVE file with 8000 Hz, 1 channel, 16-bit PCM and at least
one sample; anything else raises :class:`PromptError` at start-up, naming the file,
what is wrong and what is expected.

Audio is kept as PCM16 little-endian. :meth:`PromptLibrary.frames` encodes a prompt
once per codec (keyed by the codec name), splits it into 20 ms frames (160 samples)
and caches the tuple; the last frame is padded with PCM silence before encoding.
:meth:`PromptLibrary.sequence` plays prompts back to back with a fixed gap of
:data:`GAP_FRAMES` silent frames (60 ms) between them -- everywhere, digits included,
which also makes numbers read digit by digit easier to follow on a phone line.
"""

from __future__ import annotations

import wave
from collections.abc import Callable, Iterable, Mapping, Sequence
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

from ivr import PROMPTS

__all__ = [
    "DEFAULT_PROMPTS_DIR",
    "FRAME_BYTES",
    "FRAME_SAMPLES",
    "GAP_FRAMES",
    "PROMPT_NAMES",
    "SAMPLE_RATE",
    "PromptError",
    "PromptLibrary",
]

#: Every prompt name the menu may ask for: the menu owns the list (`ivr.PROMPTS`);
#: here it is in a stable order for loading and error messages.
PROMPT_NAMES: tuple[str, ...] = tuple(sorted(PROMPTS))

#: The built-in voice: ``voicebot/prompts/<language>/<name>.wav``, package data of the
#: ``voicebot`` package. Asked of the import system rather than derived from
#: ``__file__``, so it is right wherever ``voicebot`` was imported from.
DEFAULT_PROMPTS_DIR: Traversable = files("voicebot") / "prompts"

SAMPLE_RATE = 8000
CHANNELS = 1
SAMPLE_WIDTH = 2  # bytes: 16-bit signed PCM
FRAME_MS = 20
FRAME_SAMPLES = SAMPLE_RATE * FRAME_MS // 1000  # 160
FRAME_BYTES = FRAME_SAMPLES * SAMPLE_WIDTH  # 320 bytes of PCM16 per frame
GAP_FRAMES = 3  # 60 ms of silence between prompts in sequence()

_EXPECTED = "expected a WAV file with 8000 Hz, mono, 16-bit signed PCM"
_CONVERT_HINT = "convert with: sox IN.wav -r 8000 -c 1 -b 16 -e signed-integer OUT.wav"


class PromptError(Exception):
    """A prompt file is missing or unusable (raised at start-up)."""


def _read_pcm16(path: Traversable) -> bytes:
    """Return the PCM16 LE samples of ``path`` or raise :class:`PromptError`."""
    if not path.is_file():
        raise PromptError(f"prompt file {path} is missing; {_EXPECTED}")
    try:
        with path.open("rb") as raw, wave.open(raw, "rb") as wav:
            rate = wav.getframerate()
            channels = wav.getnchannels()
            width = wav.getsampwidth()
            problems = []
            if rate != SAMPLE_RATE:
                problems.append(f"sample rate is {rate} Hz, expected {SAMPLE_RATE} Hz")
            if channels != CHANNELS:
                problems.append(f"it has {channels} channels, expected 1 (mono)")
            if width != SAMPLE_WIDTH:
                problems.append(
                    f"samples are {width * 8}-bit, expected {SAMPLE_WIDTH * 8}-bit signed PCM"
                )
            if problems:
                raise PromptError(f"prompt file {path}: {'; '.join(problems)}; {_CONVERT_HINT}")
            pcm = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError) as exc:
        raise PromptError(
            f"prompt file {path} is not a readable PCM WAV file ({exc}); {_EXPECTED}; "
            f"{_CONVERT_HINT}"
        ) from exc
    except OSError as exc:
        raise PromptError(f"prompt file {path} cannot be read: {exc}") from exc
    pcm = pcm[: len(pcm) - len(pcm) % SAMPLE_WIDTH]
    if not pcm:
        raise PromptError(f"prompt file {path} holds no audio (0 samples); {_EXPECTED}")
    return pcm


class PromptLibrary:
    """The prompts of one language as PCM16, with per-codec caches of encoded frames."""

    def __init__(
        self, language: str, pcm: Mapping[str, bytes], sources: Mapping[str, Traversable]
    ) -> None:
        self.language = language
        self._pcm = dict(pcm)
        self._sources = dict(sources)
        self._frames: dict[tuple[str, str], tuple[bytes, ...]] = {}
        self._silence: dict[str, bytes] = {}

    @classmethod
    def load(
        cls,
        language: str,
        names: Iterable[str],
        base_dir: Traversable = DEFAULT_PROMPTS_DIR,
        override_dir: Path | None = None,
    ) -> PromptLibrary:
        """Load ``names`` for ``language``; raise :class:`PromptError` listing every bad file."""
        if override_dir is not None:
            override_dir = Path(override_dir)
            if not override_dir.is_dir():
                raise PromptError(
                    f"prompt override directory {override_dir} (ivr.prompts_dir) does not exist"
                    " or is not a directory"
                )
        if not (base_dir / language).is_dir():
            raise PromptError(
                f"prompt directory {base_dir / language} does not exist; expected"
                f" {base_dir}/<language>/<name>.wav"
            )

        pcm: dict[str, bytes] = {}
        sources: dict[str, Traversable] = {}
        errors: list[str] = []
        for name in dict.fromkeys(names):  # de-duplicate, keep order
            path: Traversable = base_dir / language / f"{name}.wav"
            if override_dir is not None and (override_dir / f"{name}.wav").exists():
                path = override_dir / f"{name}.wav"
            try:
                pcm[name] = _read_pcm16(path)
            except PromptError as exc:
                errors.append(str(exc))
                continue
            sources[name] = path
        if len(errors) == 1:
            raise PromptError(errors[0])
        if errors:
            raise PromptError(
                f"{len(errors)} prompt files are unusable:\n"
                + "\n".join(f"  - {e}" for e in errors)
            )
        return cls(language, pcm, sources)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._pcm)

    def __contains__(self, name: object) -> bool:
        return name in self._pcm

    def source(self, name: str) -> Traversable:
        """The file ``name`` was loaded from."""
        return self._sources[self._check(name)]

    def pcm(self, name: str) -> bytes:
        """The PCM16 little-endian samples of ``name`` (8 kHz mono)."""
        return self._pcm[self._check(name)]

    def duration_s(self, name: str) -> float:
        return len(self._pcm[self._check(name)]) / (SAMPLE_WIDTH * SAMPLE_RATE)

    def frames(
        self, name: str, codec_name: str, encode: Callable[[bytes], bytes]
    ) -> tuple[bytes, ...]:
        """``name`` encoded in 20 ms frames; encoded once per ``(name, codec_name)`` and cached.

        ``encode`` turns 320 bytes of PCM16 LE into one payload (160 bytes for G.711).
        """
        key = (self._check(name), codec_name)
        cached = self._frames.get(key)
        if cached is None:
            pcm = self._pcm[name]
            remainder = len(pcm) % FRAME_BYTES
            if remainder:
                pcm += bytes(FRAME_BYTES - remainder)
            cached = tuple(
                encode(pcm[i : i + FRAME_BYTES]) for i in range(0, len(pcm), FRAME_BYTES)
            )
            self._frames[key] = cached
        return cached

    def silence_frame(self, codec_name: str, encode: Callable[[bytes], bytes]) -> bytes:
        """One 20 ms frame of silence in the codec (cached per ``codec_name``)."""
        frame = self._silence.get(codec_name)
        if frame is None:
            frame = self._silence[codec_name] = encode(bytes(FRAME_BYTES))
        return frame

    def sequence(
        self, names: Sequence[str], codec_name: str, encode: Callable[[bytes], bytes]
    ) -> tuple[bytes, ...]:
        """The frames of ``names`` back to back, with :data:`GAP_FRAMES` of silence between."""
        out: list[bytes] = []
        gap = (self.silence_frame(codec_name, encode),) * GAP_FRAMES
        for index, name in enumerate(names):
            if index:
                out.extend(gap)
            out.extend(self.frames(name, codec_name, encode))
        return tuple(out)

    def _check(self, name: str) -> str:
        if name not in self._pcm:
            raise KeyError(
                f"prompt {name!r} was not loaded for language {self.language!r}"
                f" (loaded: {', '.join(self._pcm)})"
            )
        return name
