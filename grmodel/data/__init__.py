"""The datasets layer: KuaiRec-shaped generation, KuaiRec ingest and generic tabular datasets,
all writing the processed-dataset contract of :mod:`grmodel.features`.

Public entry points (import from their modules; this package imports nothing heavy):

* ``grmodel.data.kuairec.synth.generate_kuairec(out_dir, SynthConfig) -> summary``
* ``grmodel.data.kuairec.ingest.ingest_kuairec(raw_dir, out_dir, IngestConfig) -> manifest``
* ``grmodel.data.tabular.build_tabular(spec_path_or_spec, out_dir) -> manifest``
"""
