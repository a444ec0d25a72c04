"""The benchmark's requests: short chat prompts on varied topics."""

TOPICS = [
    "the sea",
    "a lighthouse keeper",
    "Paris in the rain",
    "a robot learning to cook",
    "the first day of school",
    "a dragon who hates fire",
    "a busy train station",
    "autumn leaves",
    "a lost umbrella",
    "the moon landing",
    "a bakery at dawn",
    "a chess tournament",
    "a mountain village",
    "an old violin",
    "a city of bridges",
    "a friendly ghost",
]


def messages(i: int) -> list[dict]:
    topic = TOPICS[i % len(TOPICS)]
    return [{"role": "user", "content": f"Write a short story about {topic}."}]
