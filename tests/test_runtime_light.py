"""The edge runtime must run on a Pi with no torch and no TensorFlow."""
import subprocess
import textwrap

from conftest import PYTHON, ROOT


def test_every_edge_runtime_module_imports_with_torch_and_tensorflow_blocked():
    code = textwrap.dedent("""
        import importlib, pkgutil, sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split('.')[0] in ('torch', 'tensorflow', 'keras', 'tf_keras'):
                    raise ImportError('blocked: ' + name)
        sys.meta_path.insert(0, Block())
        import edge_runtime
        names = [m.name for m in pkgutil.iter_modules(edge_runtime.__path__) if m.name != '__main__']
        for name in names:
            importlib.import_module('edge_runtime.' + name)
        print(len(names))
    """)
    run = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    assert int(run.stdout) >= 10
