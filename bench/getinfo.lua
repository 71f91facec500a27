-- wrk script: POST a GetPhoneCallInformation request (EWS Managed API shape) with Basic auth.
-- The call id and credentials come from the environment set by bench/load.sh.
wrk.method = "POST"
wrk.headers["Content-Type"] = "text/xml; charset=utf-8"
wrk.headers["Authorization"] = os.getenv("OPENUM_BENCH_AUTH")
wrk.body = [[<?xml version="1.0" encoding="utf-8"?>
<soap:Envelope xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages" xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types" xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/">
  <soap:Header>
    <t:RequestServerVersion Version="Exchange2010_SP1" />
  </soap:Header>
  <soap:Body>
    <m:GetPhoneCallInformation>
      <m:PhoneCallId Id="]] .. os.getenv("OPENUM_BENCH_CALL") .. [["/>
    </m:GetPhoneCallInformation>
  </soap:Body>
</soap:Envelope>]]

local non200 = 0
response = function(status, headers, body)
  if status ~= 200 then non200 = non200 + 1 end
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("rps %.1f p50_us %d p99_us %d errors %d (status %d connect %d read %d write %d timeout %d)\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(99),
    e.status + e.connect + e.read + e.write + e.timeout, e.status, e.connect, e.read, e.write, e.timeout))
end
