#!/usr/bin/env python3
"""A WSDL-driven EWS client: zeep (PyPI) reads openum's official Services.wsdl (and the schemas it
imports) over HTTPS, builds the three Unified Messaging operations from it, and calls them over
HTTPS with Basic authentication, trusting only the given CA file.

    um_client.py --wsdl URL --endpoint URL --cafile ROOT.pem --user NAME --item ID --dial NUMBER \\
        --xml-xsd PATH

The password comes from OPENUM_TEST_PASSWORD. Prints one JSON object per step on stdout:
PlayOnPhone's PhoneCallId, each GetPhoneCallInformation until Connected, DisconnectPhoneCall's
ResponseCode, and GetPhoneCallInformation until Disconnected. Exits non-zero on any error.
"""

import argparse
import json
import os
import sys
import time

import requests
import zeep
from zeep.transports import Transport

MESSAGES = "http://schemas.microsoft.com/exchange/services/2006/messages"


class OfflineTransport(Transport):
    """Loads everything from openum, except the W3C's xml.xsd (which zeep fetches from www.w3.org
    for the xml: namespace the EWS types use): that comes from --xml-xsd, so that the test needs
    no Internet access."""

    def __init__(self, xml_xsd, **kwargs):
        super().__init__(**kwargs)
        self.xml_xsd = xml_xsd

    def load(self, url):
        if url.split("://", 1)[-1] == "www.w3.org/2001/xml.xsd":
            with open(self.xml_xsd, "rb") as f:
                return f.read()
        return super().load(url)


def emit(**fields):
    print(json.dumps(fields), flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--wsdl", required=True)
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--cafile", required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--item", required=True)
    parser.add_argument("--dial", required=True)
    parser.add_argument("--xml-xsd", required=True)
    args = parser.parse_args()

    session = requests.Session()
    # REQUESTS_CA_BUNDLE and friends would override `verify`: trust exactly --cafile.
    session.trust_env = False
    session.verify = args.cafile
    session.auth = (args.user, os.environ["OPENUM_TEST_PASSWORD"])
    client = zeep.Client(args.wsdl, transport=OfflineTransport(args.xml_xsd, session=session))
    service = client.create_service("{%s}ExchangeServiceBinding" % MESSAGES, args.endpoint)
    version = client.get_element("{http://schemas.microsoft.com/exchange/services/2006/types}RequestServerVersion")
    headers = [version(Version="Exchange2010_SP1")]

    played = service.PlayOnPhone(
        ItemId={"Id": args.item}, DialString=args.dial, _soapheaders=headers
    )
    # With SOAP headers sent, zeep returns the reply's header and body; the header must carry
    # the ServerVersionInfo the schema describes.
    server_version = played.header.ServerVersion
    played = played.body
    call_id = played.PhoneCallId.Id
    emit(step="PlayOnPhone", phone_call_id=call_id, response_class=played.ResponseClass,
         response_code=played.ResponseCode,
         server_version=server_version.Version, major_version=server_version.MajorVersion)

    def info():
        reply = service.GetPhoneCallInformation(
            PhoneCallId={"Id": call_id}, _soapheaders=headers
        ).body
        i = reply.PhoneCallInformation
        emit(step="GetPhoneCallInformation", response_code=reply.ResponseCode,
             state=i.PhoneCallState, cause=i.ConnectionFailureCause,
             sip_code=i.SIPResponseCode, sip_text=i.SIPResponseText)
        return i

    deadline = time.monotonic() + 20
    while info().PhoneCallState != "Connected":
        if time.monotonic() > deadline:
            sys.exit("the call never connected")
        time.sleep(0.1)

    reply = service.DisconnectPhoneCall(PhoneCallId={"Id": call_id}, _soapheaders=headers).body
    emit(step="DisconnectPhoneCall", response_class=reply.ResponseClass,
         response_code=reply.ResponseCode)

    deadline = time.monotonic() + 20
    while info().PhoneCallState != "Disconnected":
        if time.monotonic() > deadline:
            sys.exit("the call never ended")
        time.sleep(0.1)


if __name__ == "__main__":
    main()
