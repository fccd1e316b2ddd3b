"""``python -m playthrough._cli``: the ``playthrough`` command."""

from . import main

main()
