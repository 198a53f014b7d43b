"""The import graph (grimp, as import-linter reads it): no cycles in the analyzer; the receiver never imports
the analyzer (only the demo, outside the receiver's import graph, runs it); the report and the console import
their charts."""

from __future__ import annotations

import grimp


def test_the_analyzer_has_no_import_cycles() -> None:
    graph = grimp.build_graph("analyzer")
    cycles = [
        (module, *chain)
        for module in sorted(graph.modules)
        for imported in sorted(graph.find_modules_directly_imported_by(module))
        if (chain := graph.find_shortest_chain(importer=imported, imported=module))
    ]
    assert cycles == []


def test_the_receiver_never_imports_the_analyzer() -> None:
    graph = grimp.build_graph("collector_ext", "analyzer")
    receiver = sorted(m for m in graph.find_children("collector_ext") if m != "collector_ext.demo")
    chains = [graph.find_shortest_chains(importer=part, imported="analyzer") for part in receiver]
    assert [chain for found in chains for chain in found] == []


def test_the_report_imports_its_sections_directly() -> None:
    graph = grimp.build_graph("analyzer")
    assert {"analyzer.gpu_charts", "analyzer.idle_charts"} <= graph.find_modules_directly_imported_by("analyzer.report")
    assert not graph.find_modules_that_directly_import("analyzer.gpu_charts") - {
        "analyzer.report",
        "analyzer.console.gpu",
    }
    idle_users = {"analyzer.report", "analyzer.console.agents"}
    assert not graph.find_modules_that_directly_import("analyzer.idle_charts") - idle_users
