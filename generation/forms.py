import json

from django import forms

from generation.ml.backends import GenerationFailed
from generation.services import MAX_CANDIDATES, with_inpainter


class GenerateForm(forms.Form):
    """Start generation: a backend from the registry (unavailable ones are refused with their reason)."""

    backend = forms.ChoiceField(widget=forms.RadioSelect)
    seed = forms.IntegerField(min_value=0, max_value=2**31 - 1, initial=0)
    num_candidates = forms.IntegerField(label="Candidates", min_value=1, max_value=MAX_CANDIDATES, initial=3)
    with_parallax = forms.BooleanField(label="Parallax video", required=False, initial=True)
    inpainter = forms.ChoiceField(label="Inpainter (copy-paste)", required=False, initial="auto")
    params = forms.CharField(label="Backend params (JSON object)", required=False, initial="{}",
                             widget=forms.TextInput(attrs={"size": 40, "placeholder": '{"scale": 0.9}'}))

    def __init__(self, *args, backends: list[dict], inpainters: list[dict], **kwargs):
        super().__init__(*args, **kwargs)
        self.backends = backends
        self.inpainters = inpainters
        self.fields["inpainter"].choices = [(i["name"], i["name"]) for i in inpainters]
        self.fields["backend"].choices = [(b["name"], f"{b['name']} {b['version']}") for b in backends]
        first_ok = next((b["name"] for b in backends if b["available"]), None)
        if first_ok:
            self.fields["backend"].initial = "copy-paste" if any(
                b["name"] == "copy-paste" and b["available"] for b in backends) else first_ok

    def clean_backend(self):
        name = self.cleaned_data["backend"]
        info = next(b for b in self.backends if b["name"] == name)
        if not info["available"]:
            raise forms.ValidationError(f"{name} is unavailable: {info['reason']}")
        return name

    def clean_params(self):
        text = (self.cleaned_data.get("params") or "").strip() or "{}"
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise forms.ValidationError(f"not valid JSON: {exc}")
        if not isinstance(value, dict):
            raise forms.ValidationError("params must be a JSON object, e.g. {\"scale\": 0.9}")
        return value

    def clean_inpainter(self):
        name = self.cleaned_data.get("inpainter") or "auto"
        info = next(i for i in self.inpainters if i["name"] == name)
        if not info["available"]:
            raise forms.ValidationError(f"{name} is unavailable: {info['reason']}")
        return name

    def clean(self):
        data = super().clean()
        if "backend" in data and "params" in data and "inpainter" in data:
            try:
                data["params"] = with_inpainter(data["params"], [data["backend"]], data["inpainter"])
            except GenerationFailed as exc:
                self.add_error("inpainter", str(exc))
        return data
