"""The AWS error hierarchy: one class per code, one registry, generic mapping."""

from __future__ import annotations

import inspect
import pickle

import pytest

import kmscore.errors as errors
from kmscore.errors import KMSError, KMSInternalException

ERRORS_MODULE_CLASSES = [
    obj
    for obj in vars(errors).values()
    if inspect.isclass(obj) and issubclass(obj, KMSError) and obj is not KMSError
]
# The classes that name a code of their own: one per AWS error code. Others are
# specializations that keep their parent's code (and are not registered).
ERROR_CLASSES = sorted(
    (cls for cls in ERRORS_MODULE_CLASSES if "code" in vars(cls)),
    key=lambda cls: cls.__name__,
)


def _all_subclasses(cls: type) -> set[type]:
    found = set()
    for sub in cls.__subclasses__():
        found.add(sub)
        found |= _all_subclasses(sub)
    return found


def test_there_are_error_classes() -> None:
    # The table the frontends map from; a handful of names the design relies on.
    names = {cls.__name__ for cls in ERROR_CLASSES}
    for name in (
        "NotFoundException",
        "DisabledException",
        "KMSInvalidStateException",
        "InvalidCiphertextException",
        "AccessDeniedException",
        "ValidationException",
        "KMSInternalException",
    ):
        assert name in names


def test_codes_are_unique_and_non_empty() -> None:
    codes = [cls.code for cls in ERROR_CLASSES]
    assert all(isinstance(c, str) and c for c in codes)
    assert len(set(codes)) == len(codes)


def test_every_class_is_exported() -> None:
    assert {cls.__name__ for cls in ERROR_CLASSES} <= set(errors.__all__)
    assert "KMSError" in errors.__all__
    for name in errors.__all__:
        assert hasattr(errors, name)


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda cls: cls.__name__)
def test_error_class_round_trip(cls: type[KMSError]) -> None:
    assert errors.error_class(cls.code) is cls
    err = errors.from_code(cls.code, "what happened")
    assert type(err) is cls
    assert err.code == cls.code
    assert err.message == "what happened"
    assert str(err) == "what happened"
    assert err.to_dict() == {"Code": cls.code, "Message": "what happened"}


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda cls: cls.__name__)
def test_fault_and_status_agree(cls: type[KMSError]) -> None:
    # A caller's fault answers 4xx; the service's fault 5xx.
    if cls.sender_fault:
        assert 400 <= cls.http_status < 500
    else:
        assert 500 <= cls.http_status < 600


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda cls: cls.__name__)
def test_errors_pickle(cls: type[KMSError]) -> None:
    # Errors cross process boundaries (daemon workers); type and message survive.
    err = pickle.loads(pickle.dumps(cls("pickled")))
    assert type(err) is cls
    assert err.message == "pickled"


def test_default_message() -> None:
    err = errors.InvalidCiphertextException()
    assert err.message == errors.InvalidCiphertextException.default_message
    assert err.message
    assert str(KMSInternalException()) == KMSInternalException.default_message


def test_every_subclass_maps_to_its_code() -> None:
    # Wherever defined: the registry answers with the class itself or, for a
    # specialization, with the ancestor whose code it keeps.
    subclasses = _all_subclasses(KMSError)
    assert set(ERRORS_MODULE_CLASSES) <= subclasses
    for cls in subclasses:
        registered = errors.error_class(cls.code)
        assert registered is not None, cls
        assert issubclass(cls, registered)
        assert ("code" in vars(cls)) == (registered is cls)


def test_unknown_code_becomes_internal_error() -> None:
    assert errors.error_class("NoSuchThingException") is None
    err = errors.from_code("NoSuchThingException", "peer said so")
    assert type(err) is KMSInternalException
    # The peer's answer is kept, code and message both.
    assert "NoSuchThingException" in err.message
    assert "peer said so" in err.message
    assert not err.sender_fault


def test_duplicate_code_is_refused() -> None:
    original = errors.error_class("NotFoundException")
    assert original is not None
    with pytest.raises(TypeError, match="NotFoundException"):

        class AnotherNotFound(KMSError):
            code = "NotFoundException"

    # The registry still answers with the first class.
    assert errors.error_class("NotFoundException") is original


def test_class_without_code_is_refused() -> None:
    with pytest.raises(TypeError, match="code"):

        class NoCode(KMSError):
            pass

    with pytest.raises(TypeError, match="code"):

        class EmptyCode(KMSError):
            code = ""

    assert errors.error_class("") is None


def test_specialization_keeps_its_parents_code() -> None:
    class StoreTimeout(errors.DependencyTimeoutException):
        pass

    err = StoreTimeout("slow disk")
    assert err.code == "DependencyTimeoutException"
    assert isinstance(err, errors.DependencyTimeoutException)
    assert not err.sender_fault
    # The wire carries the code only, so the peer rebuilds the registered parent.
    assert errors.error_class(err.code) is errors.DependencyTimeoutException
    assert type(errors.from_code(err.code, err.message)) is errors.DependencyTimeoutException


def test_new_code_registers(monkeypatch: pytest.MonkeyPatch) -> None:
    # Work on a copy of the registry so the new class does not outlive the test.
    monkeypatch.setattr(errors, "_REGISTRY", dict(errors._REGISTRY))

    class BrandNewException(KMSError):
        code = "BrandNewTestOnlyException"

    assert errors.error_class("BrandNewTestOnlyException") is BrandNewException
    assert type(errors.from_code("BrandNewTestOnlyException", "m")) is BrandNewException
