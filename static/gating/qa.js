// Keyboard-first QA grid: move with arrows, approve (a), reject (r) with toggled tags (1-6),
// select (x) and bulk-approve (Shift+A). Decisions are posted as JSON with the CSRF token.
(function () {
  const grid = document.getElementById("qa-grid");
  if (!grid) return;
  const cards = () => Array.from(grid.querySelectorAll(".ad:not(.done)"));
  const tags = Array.from(document.querySelectorAll(".tag"));
  const csrf = document.querySelector("[name=csrfmiddlewaretoken]").value;
  let current = 0;

  function focus(i) {
    const list = cards();
    if (!list.length) { grid.querySelectorAll(".ad").forEach(c => c.classList.remove("current")); return; }
    current = Math.max(0, Math.min(i, list.length - 1));
    grid.querySelectorAll(".ad").forEach(c => c.classList.remove("current"));
    list[current].classList.add("current");
    list[current].focus();
  }

  async function send(ids, decision) {
    const reason_tags = decision === "reject" ? tags.filter(t => t.classList.contains("on")).map(t => t.dataset.tag) : [];
    const response = await fetch(grid.dataset.reviewUrl, {
      method: "POST", headers: {"Content-Type": "application/json", "X-CSRFToken": csrf},
      body: JSON.stringify({ids, decision, reason_tags}),
    });
    const body = await response.json();
    if (!response.ok) { alert(body.error || "Could not save the decision"); return; }
    ids.forEach(id => {
      const card = grid.querySelector(`.ad[data-id="${id}"]`);
      card.classList.add("done", decision);
      card.querySelector(".state").textContent = decision === "approve" ? "approved" : "rejected";
    });
    tags.forEach(t => t.classList.remove("on"));
    focus(current);
  }

  document.addEventListener("keydown", (event) => {
    if (event.target.tagName === "INPUT" || event.target.tagName === "SELECT") return;
    const list = cards();
    const card = list[current];
    if (event.key === "ArrowRight") focus(current + 1);
    else if (event.key === "ArrowLeft") focus(current - 1);
    else if (event.key === "a" && card) send([Number(card.dataset.id)], "approve");
    else if (event.key === "A") {
      const selected = list.filter(c => c.classList.contains("selected")).map(c => Number(c.dataset.id));
      if (selected.length) send(selected, "approve");
    } else if (event.key === "r" && card) send([Number(card.dataset.id)], "reject");
    else if (event.key === "x" && card) card.classList.toggle("selected");
    else if (event.key === "Enter" && card) window.location = card.dataset.href;
    else if (/^[1-6]$/.test(event.key) && tags[Number(event.key) - 1]) tags[Number(event.key) - 1].classList.toggle("on");
    else return;
    event.preventDefault();
  });
  grid.addEventListener("click", (event) => {
    const card = event.target.closest(".ad");
    if (card) focus(cards().indexOf(card));
  });
  focus(0);
})();
