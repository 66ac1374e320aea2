"""The one exception type graftkit raises for problems a user can fix."""


class GraftError(Exception):
    """A problem with the user's input, reported as one line without a traceback.

    The message names the file or option at fault and says how to fix it.

    Example:
        >>> from graftkit.errors import GraftError
        >>> str(GraftError("data folder 'x' does not exist: pass a folder of class subfolders"))
        "data folder 'x' does not exist: pass a folder of class subfolders"
    """
