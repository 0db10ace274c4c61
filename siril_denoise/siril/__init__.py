"""siril-denoise inside Siril: the adapter, the jobs, the dialog and the installer.

Only :mod:`siril_denoise.siril.adapter` imports ``sirilpy`` (the entry
scripts in ``scripts/`` also call ``sirilpy.check_module_version`` with a
literal, which Siril looks for). :mod:`.jobs` holds what the three scripts
do, :mod:`.runner` what every script does around it (connect, install,
dialog or flags, errors), :mod:`.gui` the PyQt6 dialog, :mod:`.settings` the
remembered choices and :mod:`.install` the copy into Siril's script folder.
"""
