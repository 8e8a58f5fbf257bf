"""The council's configured service areas."""

from pathlib import Path

import yaml


class VocabularyError(ValueError):
    pass


def load_service_areas(path: Path) -> frozenset[str]:
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise VocabularyError(f"cannot read vocabulary file {path}: {error}") from error
    areas = document.get("service_areas") if isinstance(document, dict) else None
    if not isinstance(areas, list) or not areas or not all(isinstance(a, str) for a in areas):
        raise VocabularyError(f"{path}: 'service_areas' must be a non-empty list of names")
    return frozenset(areas)
