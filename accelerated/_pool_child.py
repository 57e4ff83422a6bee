"""Imported by the forkserver process only (``set_forkserver_preload``): it dies with
the process that started it, and every pool child forked from it dies with it (see
``accelerated.cpu``). Never import this module anywhere else."""

from accelerated.cpu import die_with_parent

die_with_parent()
