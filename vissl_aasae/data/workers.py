"""DataLoader worker helpers shared by VISSL's loaders (through vissl_aasae.compat) and the plugin's own."""

import os


def watch_main_process(_worker_id: int = 0) -> None:
    """DataLoader ``worker_init_fn``: exit this worker as soon as the process that started it
    dies.  Under forkserver, torch's own watchdog watches the worker's OS parent, the forkserver,
    which outlives a killed trainer (every worker holds the forkserver's "alive" pipe open), so the
    workers would run on as orphans.  The multiprocessing parent's sentinel is a pipe the trainer
    holds: it reads EOF when the trainer dies, however it died."""
    import multiprocessing
    import multiprocessing.connection
    import threading

    parent = multiprocessing.parent_process()
    if parent is None or parent.sentinel is None:
        return

    def exit_when_parent_dies():
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(1)

    threading.Thread(target=exit_when_parent_dies, name="aasae-exit-with-trainer", daemon=True).start()
