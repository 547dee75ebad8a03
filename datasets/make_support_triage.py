"""Generates datasets/support_triage: a customer-support ticket to its queue label.

    python datasets/make_support_triage.py [--out DIR]

Labels: billing, technical, account, shipping, feature_request. Every
template belongs to one label and no wording is shared between labels, so
the label is a function of the ticket text. Fixed seed: running this again
writes the same bytes.
"""
import argparse
import os
import random

from common import unique_pairs, write_splits

SEED = 20240612
SIZES = {"train": 2000, "validation": 200, "golden": 200}

PRODUCTS = ["the mobile app", "the dashboard", "the web editor", "the desktop client", "the reports page",
            "the calendar", "the team inbox"]
PLANS = ["Basic", "Pro", "Team", "Enterprise"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]
ACTIONS = ["upload a photo", "export a report", "open a shared file", "switch workspaces", "print a page",
           "sync my contacts", "search for a customer"]
BROWSERS = ["Firefox", "Chrome", "Safari", "Edge"]
FEATURES = ["export to CSV", "schedule messages", "use keyboard shortcuts", "group tasks by color",
            "share a read-only link", "undo a bulk delete"]
NAMES = ["anna", "ben", "chloe", "dev", "elena", "farid", "grace", "hiro", "ines", "jonas"]

TEMPLATES = {
    "billing": [
        "I was charged twice for my {plan} plan in {month}.",
        "My card was billed ${amount} but the {plan} plan costs ${amount2}.",
        "Invoice {invoice} has the wrong amount on it.",
        "Please explain the extra ${amount} fee on my last invoice.",
        "Why did the price of the {plan} plan go up in {month}?",
    ],
    "technical": [
        "{product} crashes every time I {action}.",
        "I get error E{code} when I try to {action}.",
        "{product} has been very slow since {month}.",
        "{product} will not load in {browser}.",
        "Nothing happens when I click save in {product}.",
    ],
    "account": [
        "I cannot log in, the password reset email never arrives.",
        "Please change the email on my account to {name}@example.com.",
        "My account was locked after too many login attempts.",
        "How do I turn on two-factor authentication for {name}?",
        "Please remove {name} from our account, they left the company.",
    ],
    "shipping": [
        "My order {order} has not arrived after {days} days.",
        "Order {order} was delivered to the wrong address.",
        "Can I change the delivery address for order {order}?",
        "The tracking for order {order} has not moved since {month} {day}.",
        "The box for order {order} arrived damaged.",
    ],
    "feature_request": [
        "It would be great if {product} let me {feature}.",
        "Please add a way to {feature}.",
        "Could you add a dark mode to {product}?",
        "I would love an option to {feature} in {product}.",
        "Any plans to let teams {feature}?",
    ],
}
OPENERS = ["", "", "Hi, ", "Hello, ", "Hi team, "]
CLOSERS = ["", "", " Thanks.", " Thank you!", " Please help."]


def draw(rng):
    label = rng.choice(sorted(TEMPLATES))
    template = rng.choice(TEMPLATES[label])
    amount = rng.randint(5, 400)
    slots = {
        "plan": rng.choice(PLANS), "month": rng.choice(MONTHS), "amount": amount,
        "amount2": amount + rng.randint(1, 60), "invoice": f"INV-{rng.randint(1000, 9999)}",
        "product": rng.choice(PRODUCTS), "action": rng.choice(ACTIONS), "code": rng.randint(100, 999),
        "browser": rng.choice(BROWSERS), "feature": rng.choice(FEATURES), "name": rng.choice(NAMES),
        "order": f"#{rng.randint(10000, 99999)}", "days": rng.randint(3, 30), "day": rng.randint(1, 28),
    }
    text = template.format(**slots)
    opener = rng.choice(OPENERS)
    if opener:
        text = opener + text[0].lower() + text[1:] if not text.startswith("I ") else opener + text
    text = text[0].upper() + text[1:] + rng.choice(CLOSERS)
    return text, label, [label]


def prompt(ticket):
    return f"Ticket: {ticket}\nCategory:\n"


def completion(label):
    return label


def golden_case(case_id, prompt_text, label, tags):
    return {"id": case_id, "prompt": prompt_text, "expected": label, "check": "exact", "tags": tags}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "support_triage"))
    args = parser.parse_args()
    rng = random.Random(SEED)
    pairs = unique_pairs(lambda: draw(rng), sum(SIZES.values()))
    write_splits(args.out, "support_triage", pairs, SIZES, prompt, completion, golden_case)


if __name__ == "__main__":
    main()
