"""The command line's built-in tables (`vaelab.commands.catalog`, read before torch is imported) hold exactly
what the real tables hold: a model, data set, likelihood, ... added to one and not the other fails here."""

from __future__ import annotations

import importlib

import pytest

from vaelab.commands import catalog


@pytest.mark.parametrize("what", list(catalog.TABLES))
def test_builtin_entries_are_the_real_tables(what):
    table = catalog.TABLES[what]
    real = vars(importlib.import_module(table.module))[table.name]
    from vaelab.models.registry import SOURCES  # the models registered from outside (plugins, tests)

    builtin = [name for name in real if not (table is catalog.MODELS and name in SOURCES)]
    assert list(table.builtin) == builtin, f"{what}: update vaelab.commands.catalog"
    for name, entry in table.builtin.items():
        if entry.description:  # a table shown with its descriptions (models, data sets)
            assert entry.description == real[name].description, (what, name)
            assert dict(entry.defaults) == dict(getattr(real[name], "defaults", {})), (what, name)


def test_a_loaded_table_shows_the_real_one_with_what_plugins_added(monkeypatch):
    from vaelab.models.registry import MODELS, ModelSpec

    assert catalog.MODELS.live() is MODELS  # the registry is imported in this process
    monkeypatch.setitem(MODELS, "extra-model", ModelSpec(object, "elbo", "a plugin's model"))
    assert list(catalog.MODELS)[-1] == "extra-model"
    assert catalog.MODELS["extra-model"].description == "a plugin's model"


def test_an_unloaded_table_shows_the_builtin_entries(monkeypatch):
    table = catalog.Table("vaelab_no_such_module", "NAMES", ("a", "b"))
    assert list(table) == ["a", "b"] and len(table) == 2


def test_the_upload_limit_is_the_servers():
    from vaelab.serve.uploads import MAX_UPLOAD_BYTES

    assert catalog.MAX_UPLOAD_BYTES == MAX_UPLOAD_BYTES
