"""Marks the wheel as platform-specific but Python-version-independent: it carries
liblabeldb.so (built by Tools/build-python), loaded with ctypes, so any CPython 3.10+ can use it."""
from setuptools import setup
from setuptools.dist import Distribution

try:
    from wheel.bdist_wheel import bdist_wheel
except ImportError:  # pragma: no cover - wheel missing: sdist or develop installs only
    bdist_wheel = None


class BinaryDistribution(Distribution):
    def has_ext_modules(self):
        return True


commands = {}
if bdist_wheel is not None:
    class PlatformWheel(bdist_wheel):
        def get_tag(self):
            return "py3", "none", super().get_tag()[2]

    commands["bdist_wheel"] = PlatformWheel

setup(distclass=BinaryDistribution, cmdclass=commands)
