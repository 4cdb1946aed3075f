"""The physical CSI simulator: rooms, bodies, motions, multipath, hardware, wire formats.

Public surface:

* ``dataset.generate_batch(split, seed, n_windows, ...)`` — model windows with ground truth
  (``write_shards`` / ``load_shards`` cache them as npz; ``parallel.parallel_batches``
  generates them in worker processes);
* ``scene.Scene`` — people in a room seen by simulated routers, streamed as ``CsiFrame``s
  with ``ground_truth(t)``; ``scene_config`` reads scene YAML files (``scenes/demo.yaml``);
* ``wire`` — ESP32 lines, Nexmon UDP/pcap and Intel 5300 ``.dat`` bytes of frames;
* ``view.project_front`` — the front view of room points;
* ``bench.bench_sim`` and ``commands.register`` — the benchmark and the ``sim`` CLI.

How the pieces fit and how the output compares with real captures: docs/sim_report.md.
"""
