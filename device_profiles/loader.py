"""Load and validate profiles; a broken one fails naming the file and the field."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from device_profiles.schema import DeviceProfile
from device_profiles.yamlfile import load_yaml_model


class ProfileError(ValueError):
    """A profile file could not be read or does not match the schema."""


def profile_dir() -> Path:
    """Folder of the profiles shipped with the package."""
    return Path(__file__).resolve().parent


def load_profile(path: Path | str) -> DeviceProfile:
    """Read one profile; raise :class:`ProfileError` with the file and failing fields."""
    path = Path(path)
    profile = load_yaml_model(path, DeviceProfile, "profile", ProfileError)
    if profile.kind != path.stem:
        raise ProfileError(f"{path}: field 'kind' is {profile.kind!r} but the file is {path.name}")
    return profile


def load_profiles(directory: Path | str | None = None) -> dict[str, DeviceProfile]:
    """Every ``*.yaml`` profile of ``directory`` (default: the shipped ones), by kind."""
    if directory is None:
        return dict(_shipped())
    return _load_dir(Path(directory))


def _load_dir(directory: Path) -> dict[str, DeviceProfile]:
    profiles = {}
    for path in sorted(directory.glob("*.yaml")):
        profile = load_profile(path)
        profiles[profile.kind] = profile
    if not profiles:
        raise ProfileError(f"{directory}: no *.yaml profiles found")
    return profiles


@cache
def _shipped() -> dict[str, DeviceProfile]:
    return _load_dir(profile_dir())
