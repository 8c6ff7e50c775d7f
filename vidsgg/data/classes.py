"""Action Genome class lists: read the two text files and apply the name fixes of the reference loader.

The released `object_classes.txt` / `relationship_classes.txt` hold names with the '/' and '_' stripped
("closetcabinet", "lookingat"); the pickles use the fixed names ("closet/cabinet", "looking_at").
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

OBJECT_FIXES = {"closetcabinet": "closet/cabinet", "cupglassbottle": "cup/glass/bottle",
                "papernotebook": "paper/notebook", "phonecamera": "phone/camera", "sofacouch": "sofa/couch"}
PREDICATE_FIXES = {"lookingat": "looking_at", "notlookingat": "not_looking_at", "infrontof": "in_front_of",
                   "onthesideof": "on_the_side_of", "coveredby": "covered_by", "drinkingfrom": "drinking_from",
                   "haveitontheback": "have_it_on_the_back", "leaningon": "leaning_on", "lyingon": "lying_on",
                   "notcontacting": "not_contacting", "otherrelationship": "other_relationship",
                   "sittingon": "sitting_on", "standingon": "standing_on", "writingon": "writing_on"}

# The released files, in order (used by the synthetic generator so it writes the real format).
RAW_OBJECTS = ["person", "bag", "bed", "blanket", "book", "box", "broom", "chair", "closetcabinet", "clothes",
               "cupglassbottle", "dish", "door", "doorknob", "doorway", "floor", "food", "groceries", "laptop",
               "light", "medicine", "mirror", "papernotebook", "phonecamera", "picture", "pillow", "refrigerator",
               "sandwich", "shelf", "shoe", "sofacouch", "table", "television", "towel", "vacuum", "window"]
RAW_PREDICATES = ["lookingat", "notlookingat", "unsure", "above", "beneath", "infrontof", "behind", "onthesideof",
                  "in", "carrying", "coveredby", "drinkingfrom", "eating", "haveitontheback", "holding", "leaningon",
                  "lyingon", "notcontacting", "otherrelationship", "sittingon", "standingon", "touching",
                  "twisting", "wearing", "wiping", "writingon"]
NUM_ATTENTION, NUM_SPATIAL, NUM_CONTACTING = 3, 6, 17
NUM_PREDICATES = NUM_ATTENTION + NUM_SPATIAL + NUM_CONTACTING  # 26 columns: attention | spatial | contacting
NUM_OBJECT_CLASSES = 37  # with __background__ at index 0, person at 1


@dataclass(frozen=True)
class ClassLists:
    """objects: 37 names (index 0 '__background__', 1 'person'); predicates: 26 names split into the three
    categories attention [0:3], spatial [3:9], contacting [9:26]."""
    objects: tuple[str, ...]
    predicates: tuple[str, ...]

    @property
    def attention(self) -> tuple[str, ...]:
        return self.predicates[:NUM_ATTENTION]

    @property
    def spatial(self) -> tuple[str, ...]:
        return self.predicates[NUM_ATTENTION:NUM_ATTENTION + NUM_SPATIAL]

    @property
    def contacting(self) -> tuple[str, ...]:
        return self.predicates[NUM_ATTENTION + NUM_SPATIAL:]


def _read_lines(path: Path, expected: int) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(f"Action Genome class file not found: {path}")
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if len(names) != expected:
        raise ValueError(f"{path}: expected {expected} class names, found {len(names)}")
    return names


def load_class_lists(annotation_dir: str | Path) -> ClassLists:
    """Read `object_classes.txt` (36 names) and `relationship_classes.txt` (26) and fix the names."""
    annotation_dir = Path(annotation_dir)
    objects = [OBJECT_FIXES.get(n, n) for n in _read_lines(annotation_dir / "object_classes.txt", 36)]
    predicates = [PREDICATE_FIXES.get(n, n) for n in _read_lines(annotation_dir / "relationship_classes.txt", 26)]
    return ClassLists(objects=("__background__", *objects), predicates=tuple(predicates))


def default_class_lists() -> ClassLists:
    """The fixed lists without reading files (for the summary, the meta-device model and tests)."""
    return ClassLists(objects=("__background__", *[OBJECT_FIXES.get(n, n) for n in RAW_OBJECTS]),
                      predicates=tuple(PREDICATE_FIXES.get(n, n) for n in RAW_PREDICATES))
