"""End-to-end: the CLI's config file (~/.config/pysprinter/config) sets the
package index when no flag or environment variable does."""
import pkgindex


def test_index_url_from_config_file(cli, env, tmp_path):
    wheels = tmp_path / "wheels"
    index = pkgindex.Index()
    index.add(pkgindex.build_wheel(wheels, "cfgpkg", "1.2", files={"cfgpkg/__init__.py": "V = 12\n"}))
    index.start()
    try:
        xdg = tmp_path / "xdg"
        (xdg / "pysprinter").mkdir(parents=True)
        (xdg / "pysprinter" / "config").write_text(f"# pysprinter settings\nindex_url = {index.url}\n")
        cli.write("c.py", "@requirements({'cfgpkg': ''})\ndef f():\n    import cfgpkg\n    return cfgpkg.V\n")
        p = cli("run", "--sandbox=none", "c.py", env={"XDG_CONFIG_HOME": str(xdg)})
        assert p.returncode == 0, p.stderr
        assert p.stdout == "12\n"
        # The flag wins over the file.
        p = cli("run", "--sandbox=none", "--index-url", "http://127.0.0.1:9/simple/", "c.py",
                env={"XDG_CONFIG_HOME": str(xdg), "PYSPRINTER_HOME": str(tmp_path / "fresh")})
        assert p.returncode == 4, (p.stdout, p.stderr)
    finally:
        index.stop()
