"""Generates datasets/smart_home: a spoken-style smart-home command to a JSON intent.

    python datasets/make_smart_home.py [--out DIR]

The answer is a function of the command alone (intent from the wording,
slots copied from it), so a small model can learn it exactly. Fixed seed:
running this again writes the same bytes.
"""
import argparse
import json
import os
import random

from common import unique_pairs, write_splits

SEED = 20240611
SIZES = {"train": 2000, "validation": 200, "golden": 200}

ROOMS = ["kitchen", "living room", "bedroom", "bathroom", "office", "garage", "hallway", "dining room",
         "basement", "nursery"]
DOORS = ["front", "back", "garage", "side"]
GENRES = ["jazz", "rock", "classical", "pop", "blues", "reggae", "folk", "techno"]

# intent -> (templates, slot makers). Slots: {room}, {v} (a number), {door}, {genre}.
TEMPLATES = {
    "set_temperature": ["set the {room} to {v} degrees", "make the {room} {v} degrees",
                        "heat the {room} to {v} degrees", "change the {room} thermostat to {v}",
                        "i want the {room} at {v} degrees", "{room} temperature {v}"],
    "lights_on": ["turn on the {room} lights", "switch on the lights in the {room}", "lights on in the {room}",
                  "light up the {room}"],
    "lights_off": ["turn off the {room} lights", "switch off the lights in the {room}", "lights off in the {room}",
                   "kill the lights in the {room}"],
    "set_brightness": ["dim the {room} lights to {v} percent", "set the {room} lights to {v}%",
                       "{room} brightness {v} percent", "make the {room} lights {v} percent bright"],
    "lock_door": ["lock the {door} door", "secure the {door} door", "make sure the {door} door is locked"],
    "unlock_door": ["unlock the {door} door", "open the lock on the {door} door", "let me in the {door} door"],
    "play_music": ["play {genre} in the {room}", "put on some {genre} music in the {room}",
                   "i want to hear {genre} in the {room}"],
    "set_timer": ["set a timer for {v} minutes", "start a {v} minute timer", "remind me in {v} minutes",
                  "timer {v} minutes"],
    "open_blinds": ["open the {room} blinds", "raise the blinds in the {room}"],
    "close_blinds": ["close the {room} blinds", "lower the blinds in the {room}"],
}
PREFIXES = ["", "", "please ", "hey, ", "could you ", "can you "]
SUFFIXES = ["", "", " please", " now", " thanks"]


def draw(rng):
    intent = rng.choice(sorted(TEMPLATES))
    template = rng.choice(TEMPLATES[intent])
    slots = {"room": rng.choice(ROOMS), "door": rng.choice(DOORS), "genre": rng.choice(GENRES)}
    answer = {"intent": intent}
    if intent == "set_temperature":
        slots["v"] = rng.randint(16, 28)
    elif intent == "set_brightness":
        slots["v"] = rng.randrange(10, 101, 10)
    elif intent == "set_timer":
        slots["v"] = rng.randint(1, 90)
    for name, field in (("room", "room"), ("door", "door"), ("genre", "genre"), ("v", "value")):
        if "{" + name + "}" in template:
            answer[field] = slots[name]
    if intent == "set_timer":
        answer["minutes"] = answer.pop("value")
    # "please" and "could you" only go before a verb
    prefix = rng.choice(PREFIXES) if template.split()[0] not in ("i", "{room}", "timer", "lights") else ""
    text = prefix + template.format(**slots) + rng.choice(SUFFIXES)
    if rng.random() < 0.3:
        text = text[0].upper() + text[1:]
    return text, answer, [intent]


def prompt(command):
    return f"Command: {command}\nJSON:\n"


def completion(answer):
    return json.dumps(answer)


def golden_case(case_id, prompt_text, answer, tags):
    return {"id": case_id, "prompt": prompt_text, "expected": answer, "check": "json",
            "fields": sorted(answer), "tags": tags}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "smart_home"))
    args = parser.parse_args()
    rng = random.Random(SEED)
    pairs = unique_pairs(lambda: draw(rng), sum(SIZES.values()))
    write_splits(args.out, "smart_home", pairs, SIZES, prompt, completion, golden_case)


if __name__ == "__main__":
    main()
