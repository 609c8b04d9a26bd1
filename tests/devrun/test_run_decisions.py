"""The launcher's pure decisions: where BC reaches the app, which storage, whether state is in step."""
import pytest

from devtools.run import DataDir, Ports, out_of_step, public_base_url, storage_connection


@pytest.mark.parametrize(("configured", "expected"), [
    ("", "http://127.0.0.1:7072"),
    ("http://127.0.0.1:7071", "http://127.0.0.1:7072"),
    ("http://localhost:7071/", "http://127.0.0.1:7072"),
    ("https://my-tunnel.example.net/", "https://my-tunnel.example.net"),
])
def test_a_loopback_public_base_url_follows_the_port_and_a_tunnel_is_kept(configured, expected):
    assert public_base_url(configured, 7072) == expected


def test_development_storage_means_the_azurite_this_run_started():
    started = "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;BlobEndpoint=..."
    assert storage_connection("UseDevelopmentStorage=true", started) == started
    assert storage_connection("", started) == started
    assert storage_connection("AccountName=real;AccountKey=k", started) == "AccountName=real;AccountKey=k"


def test_storage_and_emulator_state_out_of_step_is_named():
    assert out_of_step(True, True) is None and out_of_step(False, False) is None
    assert "make reset" in out_of_step(True, False)
    assert "make reset" in out_of_step(False, True)


def test_every_port_comes_with_the_option_that_moves_it():
    needed = Ports(7072, 8444, 10010).needed(with_emulator=True)
    assert [(port, fix.split("=")[0]) for port, _, fix in needed] == [
        (7072, "make run PORT"), (8444, "make run EMULATOR_PORT"), (10010, "make run AZURITE_PORT"),
        (10011, "make run AZURITE_PORT"), (10012, "make run AZURITE_PORT")]
    assert 8444 not in [port for port, _, _ in Ports(7072, 8444, 10010).needed(with_emulator=False)]


def test_a_second_run_cannot_take_a_data_dir_in_use(tmp_path):
    data = DataDir(tmp_path)
    with data.lock(), pytest.raises(RuntimeError, match="another `make run`"), data.lock():
        pass
    with data.lock():  # free again once the first let go
        pass
