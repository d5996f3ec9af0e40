"""The exception that Calc.fail raises, in a module that clients list in
allowed_remote_exmods, so that they raise it as it was raised."""


class CalcError(Exception):
    pass
