// Live updates without reloading: every few seconds, fetch this page's live part again and
// swap it in. The server renders it (escaped) exactly as on a full load; this script never
// builds markup from data. While the person works on a form of that part (focus in it, or
// text typed into it), it waits, so that a refresh never takes their reason away.
"use strict";
(function () {
  const live = document.getElementById("live");
  if (!live || !live.dataset.live || document.querySelector("form.login")) return;
  const every = Number(live.dataset.every) || 2000;
  function busy() {
    const focused = document.activeElement;
    if (focused && focused !== document.body && live.contains(focused) && focused.closest("form")) return true;
    return Array.from(live.querySelectorAll("input[type=text]")).some((input) => input.value !== "");
  }
  async function refresh() {
    if (busy()) return;
    let response;
    try {
      response = await fetch(live.dataset.live, {credentials: "same-origin", headers: {"X-Console-Live": "1"}});
    } catch (err) {
      live.dataset.state = "offline";
      return;
    }
    if (response.status === 401) {
      window.location.assign("/login?ended=1");
      return;
    }
    if (response.status >= 500) {  // keep what is shown; a 4xx live part is still this page's answer
      live.dataset.state = "error " + response.status;
      return;
    }
    const text = await response.text();
    if (busy()) return;
    live.innerHTML = text;
    live.dataset.state = "live";
    live.dataset.refreshed = String(Date.now());
  }
  window.setInterval(refresh, every);
})();
