from __future__ import annotations

import pytest

from grmodel.pipeline.diagram import BEGIN, END, PIPELINE_DOC, mermaid, update_doc
from grmodel.pipeline.remote import COMPILED_PIPELINE, load_compiled


def test_the_doc_shows_the_compiled_dag():
    ir, _ = load_compiled()
    assert f"```mermaid\n{mermaid(ir)}```" in PIPELINE_DOC.read_text(), (
        "docs/pipeline.md shows an old DAG: run `grmodel pipeline compile`")


def test_edges_are_the_stage_order_without_implied_ones():
    text = mermaid(load_compiled()[0])
    for edge in ("fetch_data --> validate_raw", "validate_raw --> ingest",
                 "ingest --> validate_processed", "validate_processed --> check_drift",
                 "check_drift --> build_vocab", "check_drift --> for_loop_2",
                 "evaluate --> register"):
        assert f"{edge}\n" in text
    assert "ingest --> build_vocab" not in text  # implied by the processed tables' gate
    assert "validate_processed --> build_vocab" not in text  # implied by the drift check
    assert "fetch_data --> register" not in text  # implied by the path through every stage
    assert 'subgraph for_loop_2 ["for each of baselines"]' in text


def test_update_doc_needs_its_markers(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text("# no block\n")
    with pytest.raises(ValueError, match="no generated block"):
        update_doc(doc, COMPILED_PIPELINE)
    doc.write_text(f"# title\n{BEGIN}\nold\n{END}\ntail\n")
    assert update_doc(doc, COMPILED_PIPELINE)
    assert doc.read_text().startswith("# title\n") and doc.read_text().endswith("tail\n")
    assert not update_doc(doc, COMPILED_PIPELINE)
