"""LAQ data: scene discovery (scenes.py), pair datasets (datasets.py), WebDataset shards (shards.py), builders."""
