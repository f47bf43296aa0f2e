import math
import re
import shutil
import struct
import subprocess
import tomllib
import wave
from pathlib import Path

import pytest

from voicebot.callbacks.prompts import CALLBACK_PROMPTS
from voicebot.media.prompt_library import (
    DEFAULT_PROMPTS_DIR,
    FRAME_BYTES,
    GAP_FRAMES,
    PROMPT_NAMES,
    PromptError,
    PromptLibrary,
)

LANGUAGES = ("ru", "uk", "en")
REPO = Path(__file__).resolve().parents[2]
#: the shipped prompts as files: a checkout or an editable install holds them on disk
SHIPPED = Path(str(DEFAULT_PROMPTS_DIR))
COMMITTED_WAVS = sorted(SHIPPED.glob("*/*.wav"))


def half(pcm: bytes) -> bytes:
    """A trivial 'codec': keep every other byte (320 bytes in, 160 out)."""
    return pcm[::2]


def write_wav(
    path: Path,
    *,
    rate: int = 8000,
    channels: int = 1,
    width: int = 2,
    seconds: float = 0.5,
    amplitude: int = 8000,
) -> Path:
    n = int(rate * seconds)
    samples = [int(amplitude * math.sin(2 * math.pi * 440 * i / rate)) for i in range(n)]
    if width == 2:
        frame_data = b"".join(struct.pack("<h", s) * channels for s in samples)
    else:  # 8-bit unsigned
        frame_data = b"".join(bytes([128 + s // 256]) * channels for s in samples)
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(width)
        wav.setframerate(rate)
        wav.writeframes(frame_data)
    return path


@pytest.fixture
def base(tmp_path: Path) -> Path:
    root = tmp_path / "prompts"
    for name in ("greeting", "digit_1", "digit_2"):
        write_wav(root / "en" / f"{name}.wav")
    return root


# --- committed prompts -------------------------------------------------------------------


def test_prompt_names_match_architecture_doc():
    doc = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    section = doc.split("## Prompt names", 1)[1].split("##", 1)[0]
    listed = set(re.findall(r"`([a-z_0-9]+)`", section)) - {"ivr", "prompts"}
    expected = {n for n in PROMPT_NAMES if not n.startswith("digit_")} | {"digit_0", "digit_9"}
    assert listed == expected
    assert len(PROMPT_NAMES) == len(set(PROMPT_NAMES)) == 23


@pytest.mark.parametrize("language", LANGUAGES)
def test_manifest_defines_every_prompt(language):
    with (DEFAULT_PROMPTS_DIR / "manifest.toml").open("rb") as fh:
        manifest = tomllib.load(fh)
    assert set(manifest[language]) == set(PROMPT_NAMES) | set(CALLBACK_PROMPTS)
    assert all(text.strip() for text in manifest[language].values())


@pytest.mark.parametrize("language", LANGUAGES)
def test_committed_language_loads(language):
    library = PromptLibrary.load(language, PROMPT_NAMES)
    assert library.names == PROMPT_NAMES
    for name in PROMPT_NAMES:
        assert library.source(name) == SHIPPED / language / f"{name}.wav"
        assert library.duration_s(name) > 0.2, name
        assert library.duration_s(name) < 15, name


def test_committed_wavs_exist():
    assert len(COMMITTED_WAVS) == len(LANGUAGES) * len((*PROMPT_NAMES, *CALLBACK_PROMPTS))


@pytest.mark.parametrize("language", LANGUAGES)
def test_callback_prompts_load(language):
    library = PromptLibrary.load(language, CALLBACK_PROMPTS)
    for name in CALLBACK_PROMPTS:
        assert library.source(name) == SHIPPED / language / f"{name}.wav"
        assert 0.2 < library.duration_s(name) < 15, name


@pytest.mark.skipif(shutil.which("sox") is None, reason="sox is not installed")
@pytest.mark.parametrize("path", COMMITTED_WAVS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_committed_wav_is_not_silent(path):
    result = subprocess.run(
        ["sox", str(path), "-n", "stat"], capture_output=True, text=True, check=True
    )
    stats = dict(
        (key.strip(), value.strip())
        for key, _, value in (line.partition(":") for line in result.stderr.splitlines())
    )
    assert float(stats["RMS     amplitude"]) > 0.02, stats
    assert float(stats["Maximum amplitude"]) > 0.5, stats  # normalised to -3 dBFS


# --- loading and validation ----------------------------------------------------------------


def test_missing_file_names_the_file(base):
    with pytest.raises(PromptError) as info:
        PromptLibrary.load("en", ["greeting", "saved"], base_dir=base)
    message = str(info.value)
    assert str(base / "en" / "saved.wav") in message
    assert "missing" in message


def test_all_bad_files_are_listed(base):
    with pytest.raises(PromptError) as info:
        PromptLibrary.load("en", ["saved", "not_saved"], base_dir=base)
    assert "saved.wav" in str(info.value)
    assert "not_saved.wav" in str(info.value)
    assert "2 prompt files" in str(info.value)


def test_missing_language_directory(base):
    with pytest.raises(PromptError, match=r"does not exist"):
        PromptLibrary.load("ru", ["greeting"], base_dir=base)


def test_wrong_sample_rate(base):
    bad = write_wav(base / "en" / "greeting.wav", rate=16000)
    with pytest.raises(PromptError) as info:
        PromptLibrary.load("en", ["greeting"], base_dir=base)
    message = str(info.value)
    assert str(bad) in message
    assert "16000" in message
    assert "8000" in message


def test_stereo(base):
    bad = write_wav(base / "en" / "greeting.wav", channels=2)
    with pytest.raises(PromptError, match="channels") as info:
        PromptLibrary.load("en", ["greeting"], base_dir=base)
    assert str(bad) in str(info.value)
    assert "mono" in str(info.value)


def test_8_bit(base):
    write_wav(base / "en" / "greeting.wav", width=1)
    with pytest.raises(PromptError, match="16-bit"):
        PromptLibrary.load("en", ["greeting"], base_dir=base)


def test_empty_audio(base):
    bad = write_wav(base / "en" / "greeting.wav", seconds=0)
    with pytest.raises(PromptError, match="no audio") as info:
        PromptLibrary.load("en", ["greeting"], base_dir=base)
    assert str(bad) in str(info.value)


@pytest.mark.parametrize(
    "content", [b"", b"not a wav file at all", b"RIFF\x10\x00\x00\x00WAVEfmt "]
)
def test_unreadable_file(base, content):
    bad = base / "en" / "greeting.wav"
    bad.write_bytes(content)
    with pytest.raises(PromptError, match="not a readable PCM WAV") as info:
        PromptLibrary.load("en", ["greeting"], base_dir=base)
    assert str(bad) in str(info.value)


def test_override_dir_wins(base, tmp_path):
    override = tmp_path / "company"
    mine = write_wav(override / "greeting.wav", seconds=1.0)
    library = PromptLibrary.load(
        "en", ["greeting", "digit_1"], base_dir=base, override_dir=override
    )
    assert library.source("greeting") == mine
    assert library.duration_s("greeting") == pytest.approx(1.0)
    assert library.source("digit_1") == base / "en" / "digit_1.wav"
    assert library.duration_s("digit_1") == pytest.approx(0.5)


def test_bad_override_is_an_error(base, tmp_path):
    write_wav(tmp_path / "company" / "greeting.wav", rate=44100)
    with pytest.raises(PromptError, match="company"):
        PromptLibrary.load("en", ["greeting"], base_dir=base, override_dir=tmp_path / "company")


def test_missing_override_dir_is_an_error(base, tmp_path):
    with pytest.raises(PromptError, match="prompts_dir"):
        PromptLibrary.load("en", ["greeting"], base_dir=base, override_dir=tmp_path / "nope")


# --- frames ----------------------------------------------------------------------------------


def test_frames_are_20ms_and_cached(base):
    library = PromptLibrary.load("en", ["greeting"], base_dir=base)
    frames = library.frames("greeting", "test", half)
    assert len(frames) == 25  # 0.5 s / 20 ms
    assert all(len(frame) == 160 for frame in frames)
    assert b"".join(frames) == library.pcm("greeting")[::2]
    assert library.frames("greeting", "test", half) is frames


def test_frames_cache_is_per_codec(base):
    library = PromptLibrary.load("en", ["greeting"], base_dir=base)
    calls: list[int] = []

    def counting(pcm: bytes) -> bytes:
        calls.append(len(pcm))
        return pcm[1::2]

    a = library.frames("greeting", "a", half)
    b = library.frames("greeting", "b", counting)
    library.frames("greeting", "b", counting)
    assert a != b
    assert calls == [FRAME_BYTES] * 25  # encoded once


def test_last_frame_is_padded_with_silence(tmp_path):
    path = tmp_path / "en" / "greeting.wav"
    path.parent.mkdir()
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(struct.pack("<h", 1000) * 200)  # 25 ms
    library = PromptLibrary.load("en", ["greeting"], base_dir=tmp_path)
    assert library.duration_s("greeting") == pytest.approx(0.025)
    frames = library.frames("greeting", "pcm", lambda pcm: pcm)
    assert [len(f) for f in frames] == [FRAME_BYTES, FRAME_BYTES]
    assert frames[1] == struct.pack("<h", 1000) * 40 + bytes(FRAME_BYTES - 80)


def test_sequence_inserts_gaps(base):
    library = PromptLibrary.load("en", ["greeting", "digit_1", "digit_2"], base_dir=base)
    seq = library.sequence(["greeting", "digit_1", "digit_2"], "test", half)
    silence = bytes(FRAME_BYTES)[::2]
    expected = (
        library.frames("greeting", "test", half)
        + (silence,) * GAP_FRAMES
        + library.frames("digit_1", "test", half)
        + (silence,) * GAP_FRAMES
        + library.frames("digit_2", "test", half)
    )
    assert seq == expected
    assert library.sequence([], "test", half) == ()
    assert library.sequence(["digit_1"], "test", half) == library.frames("digit_1", "test", half)


def test_unknown_name_is_a_key_error(base):
    library = PromptLibrary.load("en", ["greeting"], base_dir=base)
    with pytest.raises(KeyError, match="saved"):
        library.frames("saved", "test", half)
    with pytest.raises(KeyError):
        library.duration_s("saved")
