"""Errors whose message is one plain sentence meant for the person who caused them."""


class ChnmnistError(Exception):
    """Base class: str(err) is shown to users as is, on one line."""


class ImageError(ChnmnistError):
    """The input is not an image we can read."""


class NoCharacterError(ImageError):
    """The image is readable but holds nothing that looks like a character."""


class DataError(ChnmnistError):
    """A dataset file is missing, malformed or refused."""


class ModelError(ChnmnistError):
    """A model folder or repo is missing, malformed or refused."""
