"""The one exception type graftkit raises for problems a user can fix."""


class GraftError(Exception):
    """A problem with the user's input, reported as one line without a traceback.

    The message names the file or option at fault and says how to fix it.

    Example:
        >>> from graftkit.errors import GraftError
        >>> str(GraftError("data folder 'x' does not exist: pass a folder of class subfolders"))
        "data folder 'x' does not exist: pass a folder of class subfolders"
    """


def error_chain(error: BaseException) -> list[BaseException]:
    """``error`` and the exceptions it was raised from or during, outermost first (at most 20).

    Keras wraps the error that explains a failed load in others; the explanation is often deep in the chain.

    Example:
        >>> try:
        ...     try:
        ...         raise KeyError("inner")
        ...     except KeyError as inner:
        ...         raise ValueError("outer") from inner
        ... except ValueError as outer:
        ...     [type(e).__name__ for e in error_chain(outer)]
        ['ValueError', 'KeyError']
    """
    chain = []
    while error is not None and error not in chain and len(chain) < 20:
        chain.append(error)
        error = error.__cause__ or error.__context__
    return chain
