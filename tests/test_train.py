"""Training faults that need a real process: Ctrl-C (SIGINT) and a kill during a checkpoint write."""
import json
import signal
import subprocess
import sys
import textwrap


from workbench.train import load_checkpoint

SCRIPT = textwrap.dedent("""
    import json, sys, time, torch
    from workbench.train import Callback, Checkpoint, Trainer, synth_classification, synth_mlp

    class Slow(Callback):
        def after_batch(self, t):
            if t.global_step == 3:
                print("ready", flush=True)
            time.sleep(0.05)

    t = Trainer(synth_mlp(), *synth_classification(), callbacks=[Slow(), Checkpoint(sys.argv[1])], progress=False)
    first = t.fit(50)
    state = {"interrupted": first.interrupted, "step": t.global_step, "epoch": t.epoch,
             "finite": all(torch.isfinite(p).all().item() for p in t.model.parameters())}
    t.remove_callback(Slow)
    state["continued"] = not t.fit(t.epoch + 1).interrupted and t.epoch >= 1
    print(json.dumps(state), flush=True)
""")


def test_sigint_stops_at_a_batch_boundary_and_fit_continues(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGINT)  # what JupyterLab's "interrupt kernel" sends
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0  # the process (the kernel) lives on
    state = json.loads(out.strip().splitlines()[-1])
    assert state == {**state, "interrupted": True, "finite": True, "continued": True}
    ckpt = load_checkpoint(tmp_path / "last.ckpt")  # written when the fit stopped
    assert ckpt["position"]["global_step"] >= 3


def test_checkpoint_survives_kill_during_write(tmp_path):
    code = textwrap.dedent(f"""
        import os, signal, torch
        import workbench.core as core
        from workbench.train import Trainer, synth_classification, synth_mlp
        t = Trainer(synth_mlp(), *synth_classification(), progress=False)
        t.fit(1)
        t.save({str(tmp_path / "last.ckpt")!r})
        real_save = torch.save
        def dying_save(obj, f):
            f.write(b"half a checkpoint")
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        torch.save = dying_save
        t.fit(2)
        t.save({str(tmp_path / "last.ckpt")!r})
    """)
    proc = subprocess.run([sys.executable, "-c", code])
    assert proc.returncode == -signal.SIGKILL
    ckpt = load_checkpoint(tmp_path / "last.ckpt")  # the previous checkpoint, whole
    assert ckpt["position"]["epoch"] == 1 and isinstance(ckpt["model"], dict)
