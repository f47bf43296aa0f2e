"""Talk-off: no false key in over 30 minutes of speech and music at the call's codec.

The corpus is generated once per session: espeak-ng reads Russian, Ukrainian
and English texts (the English one with the GPL appended) in several voices,
speeds and pitches (12 minutes each
for en, 9 each for ru and uk), and sox synthesises 6 minutes of chord
progressions (three and four note chords of plucked strings, square, saw and
sine voices on the equal-tempered scale). All of it goes through G.711 as a
phone would send it, then through the detector as 64 calls side by side.

A chord of exactly two sine notes is not here on purpose: F5+F#6 (698.5 Hz +
1480 Hz) *is* the key 3 to any DTMF receiver, Q.24 calls that a tone, not a
talk-off. Real music carries more than two notes and harmonics.
"""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.media.dtmf_signals import detect_many, dtmf, through_g711
from voicebot.media.g711 import PCMA, PCMU, Codec
from voicebot.media.inband_dtmf import FRAME

pytestmark = pytest.mark.skipif(
    shutil.which("espeak-ng") is None or shutil.which("sox") is None,
    reason="needs espeak-ng and sox (Debian packages espeak-ng, sox)",
)

TEXTS = {
    "en": (
        "Thank you for calling. Your call is important to us, please stay on the line. "
        "The manager will categorize this call after the conversation: press the number "
        "of the category, then the amount, then hash to confirm. If you made a mistake, "
        "press star to start again. Seven hundred and seventy one customers called last "
        "week, and nine hundred and forty one of them asked about delivery times, prices, "
        "the warranty and the return policy. We open at nine in the morning and close at "
        "six in the evening, Monday to Friday; on Saturday we work until three. "
        "Please have your order number ready: it starts with two letters followed by "
        "twelve digits. Our engineers will call you back within two working days. "
        "The weather tomorrow will be cloudy with occasional rain, winds from the north "
        "west at fifteen kilometres per hour, and temperatures around twelve degrees."
    ),
    "ru": (
        "Спасибо за звонок. Ваш звонок очень важен для нас, пожалуйста, оставайтесь на линии. "
        "После разговора менеджер выбирает категорию звонка: нажмите номер категории, затем "
        "сумму и решётку для подтверждения. Если вы ошиблись, нажмите звёздочку и начните "
        "заново. На прошлой неделе нам позвонили семьсот семьдесят один клиент, и девятьсот "
        "сорок один из них спрашивали о сроках доставки, ценах, гарантии и возврате товара. "
        "Мы работаем с девяти утра до шести вечера, с понедельника по пятницу, а в субботу "
        "до трёх часов дня. Пожалуйста, приготовьте номер заказа: он начинается с двух букв "
        "и двенадцати цифр. Наши инженеры перезвонят вам в течение двух рабочих дней. "
        "Завтра облачно, временами дождь, ветер северо-западный, пятнадцать километров в час. "
        "Старый город стоит на высоком берегу широкой реки. Летом сюда приезжают туристы: "
        "они гуляют по узким улицам, заходят в маленькие кафе и музеи, фотографируют "
        "колокольни и мосты. Зимой жизнь идёт медленнее, зато вечерами в окнах горит тёплый "
        "свет, а на площади играет оркестр. Бабушка рассказывала, что когда-то здесь была "
        "ярмарка, куда съезжались купцы со всей губернии, продавали мёд, лён, кожу и посуду."
    ),
    "uk": (
        "Дякуємо за дзвінок. Ваш дзвінок дуже важливий для нас, будь ласка, залишайтеся на "
        "лінії. Після розмови менеджер обирає категорію дзвінка: натисніть номер категорії, "
        "потім суму і ґратку для підтвердження. Якщо ви помилилися, натисніть зірочку і "
        "почніть спочатку. Минулого тижня нам зателефонували сімсот сімдесят один клієнт, і "
        "дев'ятсот сорок один з них питали про терміни доставки, ціни, гарантію та повернення "
        "товару. Ми працюємо з дев'ятої ранку до шостої вечора, з понеділка по п'ятницю, а в "
        "суботу до третьої години дня. Будь ласка, приготуйте номер замовлення: він "
        "починається з двох літер і дванадцяти цифр. Наші інженери передзвонять вам протягом "
        "двох робочих днів. Завтра хмарно, часом дощ, вітер північно-західний. "
        "Старе місто стоїть на високому березі широкої річки. Влітку сюди приїжджають "
        "туристи: вони гуляють вузькими вулицями, заходять до маленьких кав'ярень і музеїв, "
        "фотографують дзвіниці та мости. Взимку життя тече повільніше, зате вечорами у вікнах "
        "горить тепле світло, а на площі грає оркестр. Бабуся розповідала, що колись тут був "
        "ярмарок, куди з'їжджалися купці з усієї губернії і продавали мед, льон та посуд."
    ),
}
# English also reads the GPL (a long text every Debian system has), when it is there.
GPL = Path("/usr/share/common-licenses/GPL-3")
if GPL.exists():
    TEXTS["en"] += " " + " ".join(GPL.read_text(encoding="utf-8").split())[:12000]
MINUTES = {"en": 12, "ru": 9, "uk": 9}
MUSIC_MINUTES = 6
RATE = 8000
VARIANTS = ["", "+m1", "+m3", "+f1", "+f2", "+f4", "+m7", "+klatt2"]
NOTES = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]
CHORDS = [(0, 4, 7), (0, 3, 7), (0, 4, 7, 10), (0, 3, 7, 10), (0, 4, 7, 11), (0, 5, 9), (0, 4, 9)]
VOICES = ["pluck", "square", "sawtooth", "sine", "triangle"]


def _sox_raw(inputs: list[str], out: Path, effects: tuple[str, ...] = ()) -> np.ndarray:
    fmt = ["-t", "raw", "-r", str(RATE), "-e", "signed", "-b", "16", "-c", "1"]
    subprocess.run(["sox", *inputs, *fmt, str(out), *effects], check=True,
                   capture_output=True, timeout=120)  # fmt: skip
    return np.fromfile(out, dtype="<i2").astype(np.float64)


def _speech(lang: str, tmp: Path) -> np.ndarray:
    """`MINUTES[lang]` of espeak-ng reading the text in turn in each voice, speed and pitch."""
    rnd = random.Random(lang)
    parts: list[np.ndarray] = []
    total = 0
    for i in range(200):
        wav = tmp / f"{lang}{i}.wav"
        voice = lang + rnd.choice(VARIANTS)
        speed, pitch = rnd.randint(120, 230), rnd.randint(15, 85)
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch),
                        "-w", str(wav), TEXTS[lang]], check=True, capture_output=True,
                       timeout=120)  # fmt: skip
        gain = rnd.uniform(-12, 0)  # loud and quiet talkers
        parts.append(_sox_raw([str(wav)], tmp / f"{lang}{i}.raw", ("gain", "-n", f"{gain:.1f}")))
        total += len(parts[-1])
        if total >= MINUTES[lang] * 60 * RATE:
            break
    return np.concatenate(parts)[: MINUTES[lang] * 60 * RATE]


def _music(tmp: Path) -> np.ndarray:
    """Chord progressions from sox synth: each chord 0.3-2 s, 3-4 notes, mixed voices."""
    rnd = random.Random("music")
    pipes = []
    seconds = 0.0
    while seconds < MUSIC_MINUTES * 60:
        length = rnd.choice([0.3, 0.5, 0.75, 1.0, 1.5, 2.0])
        root, octave = rnd.randrange(12), rnd.choice([3, 4, 5])
        voice = rnd.choice(VOICES)
        notes = []
        for step in rnd.choice(CHORDS):
            note = root + step
            notes += [voice, f"{NOTES[note % 12]}{octave + note // 12}"]
        pipes.append(f"|sox -n -r {RATE} -c 1 -b 16 -p synth {length} {' '.join(notes)} "
                     f"fade 0.01 {length} 0.05 gain -n -{rnd.uniform(3, 15):.1f}")  # fmt: skip
        seconds += length
    chunks = [  # sox concatenates its inputs
        _sox_raw(pipes[i : i + 200], tmp / f"music{i}.raw") for i in range(0, len(pipes), 200)
    ]
    return np.concatenate(chunks)


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    tmp = tmp_path_factory.mktemp("talkoff")
    audio = {lang: _speech(lang, tmp) for lang in MINUTES}
    audio["music"] = _music(tmp)
    return audio


@pytest.mark.parametrize("codec", [PCMU, PCMA], ids=lambda c: c.name)
def test_no_false_key_in_30_minutes_of_speech_and_music(
    corpus: dict[str, np.ndarray], codec: Codec
) -> None:
    minutes = {name: len(audio) / RATE / 60 for name, audio in corpus.items()}
    assert sum(minutes.values()) >= 30, minutes
    audio = np.concatenate(list(corpus.values()))
    calls = 64
    per_call = len(audio) // calls // FRAME * FRAME
    streams = through_g711(audio[: calls * per_call], codec).reshape(calls, per_call)
    false_keys = detect_many(streams)
    found = {i: keys for i, keys in enumerate(false_keys) if keys}
    assert found == {}, f"false keys in {sum(minutes.values()):.1f} min: {found}"


def test_keys_keyed_over_the_same_audio_are_heard(corpus: dict[str, np.ndarray]) -> None:
    """The talk-off run can fail: the same audio with a loud key mixed in yields that key."""
    calls = 8
    streams = np.stack([audio[: 20 * RATE] for audio in corpus.values() for _ in range(2)])
    start = 5 * RATE
    for row in range(calls):
        key = "1A5#9*0D"[row]
        streams[row, start : start + 800] += dtmf(key, 100, dbm0=-3)
    keys = detect_many(through_g711(streams, PCMU))
    assert keys == list("1A5#9*0D")
